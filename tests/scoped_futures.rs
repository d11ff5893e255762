//! `#[airlock::scoped]` on a `fn` that returns `impl Future` by ending in an
//! `async` block (the style before `async fn` in traits): the scope covers
//! the returned future, where the work happens, not just its construction.

use std::future::Future;

use airlock::DropAll;
use airlock_tests::Log;

#[airlock::scoped(policy = DropAll)]
fn dry_run(log: Log) -> impl Future<Output = airlock::Result<()>> + Send + 'static {
    let label = String::from("dry-run");
    async move {
        tokio::task::yield_now().await;
        airlock::enqueue(log.record(label))
    }
}

#[airlock::scoped]
fn checkout(log: Log, fail: bool) -> impl Future<Output = anyhow::Result<usize>> {
    async move {
        airlock::enqueue(log.record("checkout"))?;
        tokio::task::yield_now().await;
        let buffered = airlock::buffered().len();
        if fail {
            anyhow::bail!("simulated");
        }
        Ok(buffered)
    }
}

struct Service {
    log: Log,
}

impl Service {
    fn policy(&self) -> DropAll {
        DropAll
    }

    /// The options are read when the method is called, so they may borrow
    /// `self` although the future does not.
    #[airlock::scoped(policy = self.policy())]
    fn handle(&self) -> impl Future<Output = airlock::Result<()>> + Send + 'static {
        let log = self.log.clone();
        async move { airlock::enqueue(log.record("handled")) }
    }
}

/// Under `policy = DropAll`, what the future enqueues is dropped: it does
/// not escape through the caller's scope, which would dispatch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_all_holds_for_the_returned_future() {
    let log = Log::new();
    airlock::scope_async(dry_run(log.clone())).await.unwrap();
    assert!(log.runs().is_empty(), "escaped: {:?}", log.runs());

    let service = Service { log: Log::new() };
    let log = service.log.clone();
    let future = service.handle();
    drop(service);
    airlock::scope_async(future).await.unwrap();
    assert!(log.runs().is_empty(), "escaped: {:?}", log.runs());
}

/// The future runs in its own scope: it can enqueue with no scope around
/// it, its `Ok` flushes and its `Err` discards.
#[tokio::test]
async fn the_future_is_the_unit_of_work() {
    let log = Log::new();
    assert_eq!(checkout(log.clone(), false).await.unwrap(), 1);
    assert_eq!(log.runs(), ["checkout"]);
    assert!(checkout(log.clone(), true).await.is_err());
    assert_eq!(log.runs(), ["checkout"], "discarded on Err");
}

/// A scope future moves between threads: an inner scope that ends where it
/// lies must not take back the outer scope's frame, though both are the
/// first scope of a fresh thread (when frame ids counted per thread, they
/// carried the same id).
#[test]
fn a_nested_scope_future_on_another_thread_keeps_the_outer_frame() {
    let log = Log::new();
    let inner_log = log.clone();
    let mut future = Box::pin(airlock::scope_async(async move {
        airlock_tests::YieldOnce(false).await;
        // Polled on a fresh thread now: this scope is that thread's first.
        airlock::scope_async(async { airlock::enqueue(inner_log.record("inner")) }).await?;
        airlock::enqueue(inner_log.record("outer"))
    }));
    fn poll<F: Future>(future: &mut std::pin::Pin<Box<F>>) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx)
    }
    // First poll on a fresh thread: the outer scope is that thread's first.
    let mut future = std::thread::spawn(move || {
        assert!(poll(&mut future).is_pending());
        future
    })
    .join()
    .unwrap();
    let result = std::thread::spawn(move || match poll(&mut future) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("no more yields"),
    })
    .join()
    .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(log.runs(), ["inner", "outer"]);
}
