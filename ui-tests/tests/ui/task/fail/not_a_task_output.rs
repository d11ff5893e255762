#[airlock::task]
fn count(items: Vec<u8>) -> usize {
    items.len()
}

fn main() {
    let _ = count(vec![]);
}
