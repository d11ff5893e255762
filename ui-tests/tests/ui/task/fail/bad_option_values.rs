#[airlock::task(max_attempts = 0, priority = 3_000_000_000, delay = 30)]
fn first() {}

#[airlock::task(max_attempts = "5", queue = "", delay = "30 seconds")]
fn second() {}

#[airlock::task(ident = "Third", priority = high)]
fn third() {}

fn main() {}
