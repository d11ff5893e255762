/// The generated `SendEmail` clashes with this one: `ident = ...` renames it.
struct SendEmail;

#[airlock::task]
fn send_email(to: String) {
    let _ = to;
}

fn main() {
    let _ = SendEmail;
}
