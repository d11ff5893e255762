#[airlock::scoped]
const fn checkout() -> u32 {
    1
}

fn main() {
    let _ = checkout();
}
