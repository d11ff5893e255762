//! A shop's background worker on apalis + Redis.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p airlock-examples --features apalis-redis --example worker -- enqueue
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p airlock-examples --features apalis-redis --example worker
//! ```
//!
//! The first command is the shop: it places three orders, each in a scope
//! whose executor pushes the intents to apalis (one round trip per flush) and
//! prints the job ids. The second is the worker: it runs every job as its
//! task, in its own scope, so the warehouse notification that
//! `place_order` enqueues is pushed only if `place_order` succeeds. Ctrl-C
//! stops it after the jobs in flight. A `reprocess` order runs under a
//! portable policy that blocks emails, on the worker too.
//!
//! (graphile_worker on Postgres, `DATABASE_URL`, is not built on this branch.)

use airlock::apalis::{RedisExecutor, Worker};
use airlock::{PortablePolicy, Scope};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("airlock=info").init();
    if std::env::var_os("DATABASE_URL").is_some() && std::env::var_os("REDIS_URL").is_none() {
        anyhow::bail!("graphile_worker (DATABASE_URL) is not available in this build: set REDIS_URL");
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = apalis_redis::connect(url.as_str()).await?;
    let executor = RedisExecutor::new(conn.clone()).default_queue(QUEUE);

    if std::env::args().nth(1).as_deref() == Some("enqueue") {
        for order_id in 1..=3 {
            let mut scope = Scope::new().executor(executor.clone()).enter()?;
            airlock::enqueue(PlaceOrder { order_id })?;
            scope.exit()?;
            let report = scope.flush_async().await?;
            for receipt in report.receipts() {
                println!("{} -> job {} in {}", receipt.task, receipt.job_id, receipt.queue);
            }
        }
        // Reprocessing: the worker runs it without emailing anyone.
        Scope::new()
            .policy(PortablePolicy::block_tasks(["send_confirmation_email"]))
            .executor(executor.clone())
            .run_async(async { airlock::enqueue(PlaceOrder { order_id: 99 }) })
            .await?;
        println!("order 99 queued for reprocessing, without emails");
        return Ok(());
    }

    println!("worker on {url}, queue {QUEUE}: Ctrl-C to stop");
    Worker::new(conn).queue(QUEUE).executor(executor).run().await?;
    Ok(())
}
