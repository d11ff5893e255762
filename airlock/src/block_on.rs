//! Driving a future to completion from synchronous code, and refusing to
//! where that would hang.
//!
//! With the `tokio` feature, a wait inside a tokio runtime is judged first:
//!
//! - on a multi-thread runtime, the thread is handed over with
//!   `tokio::task::block_in_place`, so the runtime keeps driving its timers
//!   and I/O (and the future's) while this thread waits;
//! - on a current-thread runtime (the default of `#[tokio::test]`), the one
//!   thread that drives the timers and I/O is the one that would wait, so a
//!   future that needs them would never finish: the wait is refused with
//!   [`WouldHang`] before the future is polled. This includes that runtime's
//!   `spawn_blocking` threads, which tokio gives no way to tell apart.
//!
//! Without the feature, airlock cannot see a tokio runtime: the thread parks
//! until the future wakes it, which inside a current-thread runtime, for a
//! future that needs the runtime, is never.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Waiting for an asynchronous run here would hang the runtime that drives
/// this thread: the wait was refused before anything was polled.
#[derive(Debug)]
pub(crate) struct WouldHang;

impl fmt::Display for WouldHang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not started: synchronous code cannot wait for asynchronous work on a thread of \
             a current-thread tokio runtime (the default of `#[tokio::test]`), whose \
             timers and I/O only run when this thread is free, so the wait would hang. Flush \
             from an async scope (`airlock::scope_async`, `Scope::run_async`, an async \
             `#[scoped]` fn; `registry::run_json_async` for a worker), dispatch with \
             `TokioExecutor`, or use a multi-thread runtime",
        )
    }
}

impl std::error::Error for WouldHang {}

/// How a wait on this thread must go.
enum Wait {
    /// Park the thread until the future wakes it: no tokio runtime here.
    Park,
    /// Hand the thread over to a multi-thread runtime's other workers first.
    #[cfg(feature = "tokio")]
    InPlace,
}

fn how_to_wait() -> Result<Wait, WouldHang> {
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => Ok(Wait::InPlace),
            // Current-thread, and flavors this version does not know.
            _ => Err(WouldHang),
        };
    }
    Ok(Wait::Park)
}

/// Whether [`block_on`] would refuse to wait on this thread.
pub(crate) fn check() -> Result<(), WouldHang> {
    how_to_wait().map(drop)
}

/// Drives `future` to completion on this thread, or refuses, without polling
/// it, where that would hang (see the module's docs).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, WouldHang> {
    Ok(match how_to_wait()? {
        Wait::Park => park_on(future),
        #[cfg(feature = "tokio")]
        Wait::InPlace => tokio::task::block_in_place(|| park_on(future)),
    })
}

/// Polls `future` on this thread, parking between wake-ups.
fn park_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}
