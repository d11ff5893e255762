struct Mailer;

impl Mailer {
    #[airlock::task]
    fn send(&self, to: String) {
        let _ = to;
    }
}

fn main() {
    Mailer.send("a@b.c".into());
}
