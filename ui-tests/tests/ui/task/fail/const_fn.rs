#[airlock::task]
const fn answer(n: u64) -> u64 {
    n
}

fn main() {
    let _ = answer(42);
}
