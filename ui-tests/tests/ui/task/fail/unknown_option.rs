#[airlock::task(queue = "mail", retries = 3)]
fn send(to: String) {
    let _ = to;
}

fn main() {
    send(String::new());
}
