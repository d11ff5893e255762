#[airlock::task]
fn log(message: impl Into<String>, lines: Vec<impl ToString>) {
    let _ = (message.into(), lines.len());
}

fn main() {
    log("x", vec![1]);
}
