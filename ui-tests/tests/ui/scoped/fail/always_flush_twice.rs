#[airlock::scoped(always_flush, always_flush)]
fn twice() {}

fn main() {
    twice();
}
