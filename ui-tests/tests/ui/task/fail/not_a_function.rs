#[airlock::task]
struct SendEmail {
    to: String,
}

#[airlock::task]
mod tasks {}

fn main() {
    // On error the item is still emitted.
    let _ = SendEmail { to: String::new() };
}
