//! Async functions and methods, and stacking with `#[tokio::main]` in
//! either order.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

#[airlock::scoped(policy = airlock::AllowAll)]
async fn backfill(rows: u32) -> anyhow::Result<u32> {
    airlock::enqueue(Send { n: rows })?;
    let doubled: u32 = async { rows * 2 }.await;
    anyhow::ensure!(rows != 0, "nothing to backfill");
    if rows > 100 {
        return Ok(100);
    }
    Ok(doubled)
}

#[airlock::scoped]
async fn borrowing(name: &str) -> &str {
    airlock::enqueue(Send { n: 1 }).unwrap();
    name
}

#[airlock::scoped]
async fn opaque() -> impl std::fmt::Display {
    7
}

struct Service {
    base: u32,
}

impl Service {
    #[airlock::scoped]
    async fn handle(&self, n: u32) -> Result<u32, airlock::Error> {
        airlock::enqueue(Send { n })?;
        Ok(self.base + n)
    }

    #[airlock::scoped]
    async fn reset(&mut self) {
        self.base = 0;
    }
}

/// `#[tokio::main]` outside `#[scoped]`: the scope wraps the async body.
#[tokio::main(flavor = "current_thread")]
#[airlock::scoped]
async fn run_inner() -> anyhow::Result<()> {
    airlock::enqueue(Send { n: 50 })?;
    Ok(())
}

/// `#[scoped]` outside `#[tokio::main]`: the scope wraps the blocking call.
#[airlock::scoped]
#[tokio::main(flavor = "current_thread")]
async fn run_outer() -> anyhow::Result<()> {
    airlock::enqueue(Send { n: 60 })?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(backfill(3).await.unwrap(), 6);
    assert_eq!(sent(), 3);
    assert!(backfill(0).await.is_err());
    assert_eq!(sent(), 0);
    assert_eq!(backfill(200).await.unwrap(), 100);
    assert_eq!(sent(), 200);

    assert_eq!(borrowing("x").await, "x");
    assert_eq!(sent(), 1);
    assert_eq!(opaque().await.to_string(), "7");

    let mut service = Service { base: 10 };
    assert_eq!(service.handle(5).await.unwrap(), 15);
    assert_eq!(sent(), 5);
    service.reset().await;
    assert_eq!(service.base, 0);

    std::thread::spawn(|| {
        run_inner().unwrap();
        assert_eq!(sent(), 50);
        run_outer().unwrap();
        assert_eq!(sent(), 60);
    })
    .join()
    .unwrap();
}
