//! An order flow: the side effects are stated where they belong, in
//! `Order::process`, and each caller decides whether and when they escape.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use airlock::{AssertNoEffects, BlockTasks, DropAll, Scope};

/// Emails the customer that the order went through.
#[airlock::task]
fn send_confirmation_email(order_id: u64, to: String) -> std::io::Result<()> {
    println!("    sent: confirmation email for order {order_id} to {to}");
    Ok(())
}

/// Tells the warehouse to ship. Asynchronous, with its own stable name and
/// default dispatch options for a job queue.
#[airlock::task(name = "warehouse.notify", queue = "warehouse", max_attempts = 5)]
async fn notify_warehouse(order_id: u64) -> anyhow::Result<()> {
    println!("    sent: warehouse notified of order {order_id}");
    Ok(())
}

#[derive(Debug)]
struct Order {
    id: u64,
    email: String,
    processed: bool,
}

impl Order {
    fn new(id: u64) -> Self {
        Order {
            id,
            email: format!("customer{id}@example.com"),
            processed: false,
        }
    }

    /// Domain code: states its side effects, performs none of them.
    fn process(&mut self) -> airlock::Result<()> {
        self.processed = true;
        airlock::enqueue(SendConfirmationEmail {
            order_id: self.id,
            to: self.email.clone(),
        })?;
        airlock::enqueue(NotifyWarehouse { order_id: self.id })?;
        Ok(())
    }
}

/// An endpoint: one scope per call, flushed when it returns `Ok`.
#[airlock::scoped]
fn checkout(order: &mut Order) -> airlock::Result<()> {
    order.process()?;
    println!("    checkout done, nothing sent yet");
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("payment declined")]
struct PaymentDeclined;

fn main() -> anyhow::Result<()> {
    println!("1. an endpoint: effects escape when the scope succeeds");
    checkout(&mut Order::new(1))?;

    println!("2. a failure: the scope discards, nothing is sent");
    let declined: Result<(), anyhow::Error> = airlock::scope(|| {
        Order::new(2).process()?;
        Err(PaymentDeclined.into())
    });
    println!("    result: {}", declined.unwrap_err());

    println!("3. a migration: DropAll buffers everything and sends nothing");
    let mut dry_run = Scope::new().policy(DropAll).enter()?;
    Order::new(3).process()?;
    dry_run.exit()?;
    for intent in dry_run.intents() {
        println!("    would send: {intent}");
    }
    dry_run.flush()?;

    println!("4. a test of pure code: AssertNoEffects turns any enqueue into an error");
    let error = Scope::new()
        .policy(AssertNoEffects)
        .run(|| Order::new(4).process())
        .unwrap_err();
    println!("    error: {error}");

    println!("5. a test that looks at the effects instead of performing them");
    let (_, intents) = airlock::capture(|| Order::new(5).process());
    let email = intents[0]
        .payload::<SendConfirmationEmail>()
        .expect("the first intent is the email");
    println!(
        "    email to {}, as JSON {}",
        email.to,
        intents[0].to_json()?
    );
    println!(
        "    {} goes to queue {:?}",
        intents[1].name(),
        intents[1].options().queue
    );

    println!("6. an admin endpoint: everything but the email (by type: a typo cannot compile)");
    Scope::new()
        .policy(BlockTasks::of::<SendConfirmationEmail>())
        .run(|| Order::new(6).process())?;

    println!("7. nesting: the outer scope decides for the scopes inside it");
    let mut batch = Scope::new().enter()?;
    checkout(&mut Order::new(7))?;
    checkout(&mut Order::new(8))?;
    println!("    {} intents held by the outer scope", batch.len());
    batch.exit()?;
    let report = batch.flush()?;
    println!("    flushed: {:?}", report.dispatched().collect::<Vec<_>>());

    println!("8. async: the scope follows the future across .await and threads");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(airlock::scope_async(async {
        tokio::task::yield_now().await;
        Order::new(9).process()
    }))?;
    Ok(())
}
