//! A `fn` returning `impl Future` whose body ends in an `async` block (the
//! style before `async fn`): the scope covers the returned future, so what it
//! enqueues when polled is judged by the function's policy, not its caller's.
#![deny(warnings)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn notify(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

/// `move`, `Send + 'static`, statements before the block.
#[airlock::scoped(policy = airlock::DropAll)]
fn dry_run(n: u32) -> impl Future<Output = airlock::Result<u32>> + Send + 'static {
    let doubled = n * 2;
    async move {
        airlock::enqueue(Notify { n: doubled })?;
        Ok(doubled)
    }
}

struct Service {
    n: u32,
}

impl Service {
    fn policy(&self) -> airlock::AllowAll {
        airlock::AllowAll
    }

    /// Not `move`, borrowing `self`; an option reading `self`; a plain
    /// output, which always flushes.
    #[airlock::scoped(policy = self.policy())]
    fn handle<'a>(&'a self) -> impl Future<Output = u32> + 'a {
        async {
            airlock::enqueue(Notify { n: self.n }).unwrap();
            self.n
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The caller's scope would dispatch anything that escaped into it.
    let n = airlock::scope_async(dry_run(3)).await.unwrap();
    assert_eq!(n, 6);
    assert_eq!(sent(), 0, "DropAll holds for the future's work");

    let service = Service { n: 5 };
    assert_eq!(service.handle().await, 5);
    assert_eq!(sent(), 5, "flushed when the future completed");
}
