//! Methods of `#[async_trait]` traits: by the time `#[scoped]` runs they are
//! plain `fn`s returning `Box::pin(async move { .. })`; the scope must wrap
//! the future, not its construction. Native `async fn` in traits as well.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

#[async_trait::async_trait]
trait Handler {
    async fn handle(&self, n: u32) -> airlock::Result<u32>;
}

struct Service;

impl Service {
    fn policy(&self) -> airlock::AllowAll {
        airlock::AllowAll
    }
}

#[async_trait::async_trait]
impl Handler for Service {
    // The option reads `self`, as the method's body does.
    #[airlock::scoped(policy = self.policy())]
    async fn handle(&self, n: u32) -> airlock::Result<u32> {
        airlock::enqueue(Send { n })?;
        let _ = self.policy();
        Ok(n)
    }
}

struct DryRun;

#[async_trait::async_trait]
impl Handler for DryRun {
    #[airlock::scoped(policy = airlock::DropAll)]
    async fn handle(&self, n: u32) -> airlock::Result<u32> {
        airlock::enqueue(Send { n })?;
        Ok(n)
    }
}

trait Native {
    async fn native(&self, n: u32) -> airlock::Result<u32>;
}

impl Native for Service {
    #[airlock::scoped]
    async fn native(&self, n: u32) -> airlock::Result<u32> {
        airlock::enqueue(Send { n })?;
        Ok(n)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Built outside any scope, awaited later: the scope is the future's.
    let future = Service.handle(2);
    assert_eq!(future.await.unwrap(), 2);
    assert_eq!(SENT.load(Ordering::SeqCst), 2);
    assert_eq!(Service.native(3).await.unwrap(), 3);
    assert_eq!(SENT.load(Ordering::SeqCst), 5);
    // The policy applies: the scope is the method's own.
    assert_eq!(DryRun.handle(4).await.unwrap(), 4);
    assert_eq!(SENT.load(Ordering::SeqCst), 5);
}
