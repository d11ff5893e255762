//! An `async fn` task: the struct's `run` is pending, awaited by the executor.
#![deny(warnings)]

use std::sync::atomic::{AtomicU64, Ordering};

use airlock::{Run, Task};

static NOTIFIED: AtomicU64 = AtomicU64::new(0);

#[airlock::task(name = "warehouse.notify", queue = "warehouse", max_attempts = 5)]
async fn notify_warehouse(order_id: u64) -> anyhow::Result<()> {
    anyhow::ensure!(order_id != 0, "no order 0");
    NOTIFIED.store(order_id, Ordering::SeqCst);
    Ok(())
}

#[airlock::task]
pub async fn ping() {}

fn main() {
    assert!(NotifyWarehouse::IS_ASYNC);
    let run = NotifyWarehouse { order_id: 42 }.run();
    assert!(matches!(run, Run::Pending(_)));
    run.wait().unwrap();
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 42);

    let error = NotifyWarehouse { order_id: 0 }.run().wait().unwrap_err();
    assert_eq!(error.to_string(), "no order 0");

    Ping {}.run().wait().unwrap();

    // The function itself is still an `async fn`.
    let future = notify_warehouse(1);
    drop(future);
}
