#[airlock::task]
unsafe fn poke(address: usize) {
    let _ = address;
}

fn main() {
    unsafe { poke(0) };
}
