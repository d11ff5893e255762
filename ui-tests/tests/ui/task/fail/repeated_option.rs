#[airlock::task(queue = "mail", name = "mail.send", queue = "urgent")]
fn send(to: String) {
    let _ = to;
}

fn main() {
    send(String::new());
}
