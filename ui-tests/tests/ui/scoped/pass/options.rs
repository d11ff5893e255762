//! Every option, alone and together.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

use airlock::{DropAll, Exit, InlineExecutor, ScopeKind};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

/// Flushes even when the body fails.
#[derive(Default)]
struct AlwaysFlush;

impl ScopeKind for AlwaysFlush {
    fn should_flush(&self, exit: Exit) -> bool {
        matches!(exit, Exit::Success | Exit::Failure)
    }
}

#[airlock::scoped(policy = DropAll)]
fn dry_run() -> airlock::Result<()> {
    airlock::enqueue(Send { n: 1 })
}

#[airlock::scoped(executor = InlineExecutor)]
fn inline() -> airlock::Result<()> {
    airlock::enqueue(Send { n: 2 })
}

#[airlock::scoped(scope = AlwaysFlush)]
fn alerting() -> airlock::Result<()> {
    airlock::enqueue(Send { n: 4 })?;
    Err(airlock::Error::TaskFailed {
        task: "pretend failure",
        source: "the body failed".into(),
    })
}

#[airlock::scoped(scope = airlock::Independent, executor = InlineExecutor, policy = airlock::AllowAll,)]
fn all_three() -> airlock::Result<()> {
    airlock::enqueue(Send { n: 8 })
}

fn main() {
    dry_run().unwrap();
    assert_eq!(sent(), 0);
    inline().unwrap();
    assert_eq!(sent(), 2);
    assert!(alerting().is_err());
    assert_eq!(sent(), 4, "AlwaysFlush flushes on Err");
    all_three().unwrap();
    assert_eq!(sent(), 8);
}
