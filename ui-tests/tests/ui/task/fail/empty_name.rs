#[airlock::task(name = "")]
fn notify(order_id: u64) {
    let _ = order_id;
}

fn main() {
    notify(1);
}
