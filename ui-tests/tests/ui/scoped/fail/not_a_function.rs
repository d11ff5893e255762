#[airlock::scoped]
struct Checkout;

#[airlock::scoped]
impl Checkout {
    fn run(&self) {}
}

trait Handler {
    #[airlock::scoped]
    fn handle(&self);
}

fn main() {
    Checkout.run();
}
