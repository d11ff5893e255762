//! A shop's background worker: graphile_worker on Postgres with
//! `DATABASE_URL`, apalis on Redis with `REDIS_URL`.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run -p airlock-examples --all-features --example worker -- enqueue
//! DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run -p airlock-examples --all-features --example worker
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p airlock-examples --all-features --example worker -- enqueue
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p airlock-examples --all-features --example worker
//! ```
//!
//! The first command of each pair is the shop: it places three orders, each
//! in a scope whose executor sends the intents to the queue (one round trip
//! per flush) and prints the job ids. The second is the worker: it runs every job as its
//! task, in its own scope, so the warehouse notification that
//! `place_order` enqueues is pushed only if `place_order` succeeds. Ctrl-C
//! stops it after the jobs in flight. A `reprocess` order runs under a
//! portable policy that blocks emails, on the worker too.

use airlock::{Executor, PortablePolicy, Scope};

/// Emails the customer.
#[airlock::task]
fn send_confirmation_email(order_id: u64) {
    println!("  emailing the customer about order {order_id}");
}

/// Tells the warehouse to ship.
#[airlock::task(max_attempts = 5)]
async fn notify_warehouse(order_id: u64) {
    println!("  warehouse notified about order {order_id}");
}

/// Places an order: its effects are follow-up jobs.
#[airlock::task(max_attempts = 3)]
fn place_order(order_id: u64) -> airlock::Result<()> {
    println!("placing order {order_id}");
    airlock::enqueue(SendConfirmationEmail { order_id })?;
    airlock::enqueue(NotifyWarehouse { order_id })
}

const QUEUE: &str = "airlock-example-shop";

/// The shop: three orders, and one reprocessing that must not email.
async fn enqueue<E: Executor + Clone>(executor: E) -> anyhow::Result<()> {
    for order_id in 1..=3 {
        let mut scope = Scope::new().executor(executor.clone()).enter()?;
        airlock::enqueue(PlaceOrder { order_id })?;
        scope.exit()?;
        let report = scope.flush_async().await?;
        for receipt in report.receipts() {
            println!("{} -> job {}", receipt.task, receipt.job_id);
        }
    }
    Scope::new()
        .policy(PortablePolicy::block_tasks(["send_confirmation_email"]))
        .executor(executor)
        .run_async(async { airlock::enqueue(PlaceOrder { order_id: 99 }) })
        .await?;
    println!("order 99 queued for reprocessing, without emails");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("airlock=info")
        .init();
    let enqueuing = std::env::args().nth(1).as_deref() == Some("enqueue");

    if let Ok(url) = std::env::var("DATABASE_URL") {
        use airlock::graphile::{GraphileExecutor, Worker};
        let pool = sqlx::PgPool::connect(&url).await?;
        graphile_worker::WorkerUtils::new(pool.clone(), "graphile_worker")
            .migrate()
            .await?;
        let executor = GraphileExecutor::new(pool.clone());
        if enqueuing {
            return enqueue(executor).await;
        }
        println!("graphile worker on {url}: Ctrl-C to stop");
        Worker::new(pool)
            .task::<PlaceOrder>()
            .task::<SendConfirmationEmail>()
            .task::<NotifyWarehouse>()
            .executor(executor)
            .run()
            .await?;
        return Ok(());
    }

    use airlock::apalis::{RedisExecutor, Worker};
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = apalis_redis::connect(url.as_str()).await?;
    let executor = RedisExecutor::new(conn.clone()).default_queue(QUEUE);
    if enqueuing {
        return enqueue(executor).await;
    }
    println!("apalis worker on {url}, queue {QUEUE}: Ctrl-C to stop");
    Worker::new(conn)
        .queue(QUEUE)
        .executor(executor)
        .run()
        .await?;
    Ok(())
}
