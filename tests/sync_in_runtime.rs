//! Synchronous scopes and `registry::run_json` inside a tokio runtime, with
//! an async task that needs the runtime's timer (issue 6, item 12): never a
//! hang. On a current-thread runtime the wait is refused with an error that
//! hands the intents back; on a multi-thread runtime the task runs.
//!
//! Each test runs its body on a thread of its own and fails if that does not
//! finish in time, so a regression fails the suite instead of hanging it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::{
    Batch, Defaults, Dispatch, DispatchFailure, Executor, Intents, Run, Scope, ScopeKind, Task,
    Undelivered,
};
use airlock_tests::{Log, Record, chain, dispatch_error, labels};
use serde::{Deserialize, Serialize};

/// Sleeps `ms` on tokio's timer, then records its label. Name: `nap`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Nap {
    record: Record,
    ms: u64,
}

impl Task for Nap {
    const NAME: &'static str = "nap";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            self.record.run().wait()
        })
    }
}

fn nap(log: &Log, label: &str) -> Nap {
    Nap {
        record: log.record(label),
        ms: 1,
    }
}

/// A registered async task that sleeps on tokio's timer, for `run_json`.
#[airlock::task(name = "sync_in_runtime.timer_nap")]
async fn timer_nap(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs `body` on a thread of its own; panics if it has not finished within
/// `limit` (it hung) or if it panicked.
fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung: the body did not finish within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the body panicked"),
    }
}

const LIMIT: Duration = Duration::from_secs(20);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The advice the refusal gives.
fn assert_says_what_to_do(message: &str) {
    assert!(
        message.contains("current-thread tokio runtime"),
        "{message}"
    );
    assert!(message.contains("scope_async"), "{message}");
    assert!(message.contains("TokioExecutor"), "{message}");
}

/// `airlock::scope` in a current-thread runtime (the default of
/// `#[tokio::test]`) with an async task on tokio's timer: the synchronous
/// tasks before it run, then the flush fails on it, naming it and handing it
/// back, not started, with the rest.
#[test]
fn a_sync_scope_in_a_current_thread_runtime_refuses_to_hang() {
    let log = Log::new();
    let inner = log.clone();
    let error = within(LIMIT, move || {
        current_thread().block_on(async {
            airlock::scope(|| -> airlock::Result<()> {
                airlock::enqueue(inner.record("before"))?;
                airlock::enqueue(nap(&inner, "napped"))?;
                airlock::enqueue(inner.record("after"))
            })
        })
    })
    .unwrap_err();

    assert_eq!(log.runs(), ["before"]);
    let message = chain(&error);
    assert!(message.contains("`nap`"), "names the task: {message}");
    assert_says_what_to_do(&message);
    let error = dispatch_error(error);
    assert_eq!(error.failed_task(), "nap");
    assert_eq!(error.report().dispatched_count(), 1);
    assert_eq!(
        error.failed().and_then(|i| i.payload()),
        Some(&nap(&log, "napped"))
    );
    assert_eq!(labels(error.not_attempted()), ["after"]);

    // Handed back, it runs where it can: in an async scope.
    let back = error.into_undispatched();
    let retried = log.clone();
    within(LIMIT, move || {
        current_thread().block_on(airlock::scope_async(async move {
            back.into_iter().try_for_each(airlock::enqueue)
        }))
    })
    .unwrap();
    assert_eq!(retried.runs(), ["before", "napped", "after"]);
}

/// The same inside a task spawned on the runtime, and with a synchronous
/// `#[scoped]` function.
#[test]
fn a_sync_scoped_fn_in_a_spawned_task_refuses_to_hang() {
    #[airlock::scoped]
    fn checkout(log: &Log) -> airlock::Result<()> {
        airlock::enqueue(nap(log, "napped"))
    }

    let log = Log::new();
    let inner = log.clone();
    let error = within(LIMIT, move || {
        current_thread()
            .block_on(async { tokio::spawn(async move { checkout(&inner) }).await.unwrap() })
    })
    .unwrap_err();
    assert_says_what_to_do(&chain(&error));
    assert_eq!(labels(&error.into_undispatched()), ["<nap>"]);
    assert!(log.runs().is_empty());
}

/// Keeps the flushed batch, as a transaction scope does until its commit.
#[derive(Clone, Default)]
struct AfterCommit {
    pending: Arc<Mutex<Option<Batch>>>,
}

impl ScopeKind for AfterCommit {
    fn schedule(&self, batch: Batch) -> Option<Batch> {
        *self.pending.lock().unwrap() = Some(batch);
        None
    }
}

/// A deferred batch dispatched synchronously (the commit) inside a
/// current-thread runtime: the same refusal, handing back the async task and
/// the rest; nothing goes missing.
#[test]
fn a_deferred_batch_dispatched_synchronously_refuses_to_hang() {
    let log = Log::new();
    let inner = log.clone();
    let error = within(LIMIT, move || {
        current_thread().block_on(async {
            let kind = AfterCommit::default();
            Scope::new()
                .kind(kind.clone())
                .run(|| -> airlock::Result<()> {
                    airlock::enqueue(inner.record("a"))?;
                    airlock::enqueue(nap(&inner, "napped"))?;
                    airlock::enqueue(inner.record("b"))
                })
                .unwrap();
            let batch = kind.pending.lock().unwrap().take().expect("kept");
            batch.dispatch()
        })
    })
    .unwrap_err();
    assert_eq!(log.runs(), ["a"]);
    assert_says_what_to_do(&chain(&error));
    let error = dispatch_error(error);
    assert_eq!(error.failed_task(), "nap");
    assert_eq!(error.report().dispatched_count(), 1);
    let back = error.into_undispatched();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].payload(), Some(&nap(&log, "napped")));
    assert_eq!(labels(&back[1..]), ["b"]);
}

/// `registry::run_json` of an async task in a current-thread runtime fails at
/// once, naming the task and pointing at `run_json_async`; that one runs it.
#[test]
fn run_json_in_a_current_thread_runtime_refuses_to_hang() {
    let error = within(LIMIT, || {
        current_thread().block_on(async {
            airlock::registry::run_json("sync_in_runtime.timer_nap", r#"{"ms": 1}"#)
        })
    })
    .unwrap_err();
    assert_eq!(error.task(), Some("sync_in_runtime.timer_nap"));
    let message = chain(&error);
    assert!(message.contains("run_json_async"), "{message}");
    assert!(message.contains("not started"), "{message}");

    within(LIMIT, || {
        current_thread().block_on(airlock::registry::run_json_async(
            "sync_in_runtime.timer_nap",
            r#"{"ms": 1}"#,
        ))
    })
    .unwrap();
}

/// On a multi-thread runtime a synchronous scope can wait: it hands its
/// thread over (`block_in_place`), so the timer keeps running even when the
/// scope runs on the only worker.
#[test]
fn a_sync_scope_on_a_multi_thread_runtime_runs_the_task() {
    let log = Log::new();
    let inner = log.clone();
    within(LIMIT, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(async move {
                airlock::scope(|| -> airlock::Result<()> {
                    airlock::enqueue(nap(&inner, "in a worker"))?;
                    airlock::enqueue(inner.record("after"))
                })
            })
            .await
            .unwrap()
        })
    })
    .unwrap();
    assert_eq!(log.runs(), ["in a worker", "after"]);
}

/// Dispatches later: a pending dispatch that runs each task in turn.
struct Later;

impl Executor for Later {
    fn dispatch(&self, mut intents: Intents) -> Dispatch {
        Dispatch::Pending(Box::pin(async move {
            let mut dispatched = 0;
            while let Some(intent) = intents.next() {
                if let Err(error) = intent.clone().run().finish().await {
                    return Err(DispatchFailure::new(dispatched, intent, error, intents));
                }
                dispatched += 1;
            }
            Ok(())
        }))
    }
}

/// A custom executor's pending dispatch, waited for by a synchronous scope in
/// a current-thread runtime: refused before it starts, naming the first task;
/// the intents it held go to the undelivered hook, and nothing runs.
#[test]
fn a_pending_custom_dispatch_in_a_current_thread_runtime_refuses_to_hang() {
    let log = Log::new();
    let inner = log.clone();
    let (error, lost) = within(LIMIT, move || {
        let lost = Arc::new(Mutex::new(Vec::new()));
        let sink = lost.clone();
        let defaults = Defaults::new().on_undelivered(move |u: Undelivered| {
            sink.lock().unwrap().extend(u.into_intents());
        });
        let error = airlock::with_defaults(defaults, || {
            current_thread().block_on(async {
                Scope::new().executor(Later).run(|| -> airlock::Result<()> {
                    airlock::enqueue(inner.record("a"))?;
                    airlock::enqueue(nap(&inner, "napped"))
                })
            })
        });
        let lost = std::mem::take(&mut *lost.lock().unwrap());
        (error, lost)
    });
    let error = dispatch_error(error.unwrap_err());
    let message = chain(&*error);
    assert!(
        message.contains("`record`"),
        "names the first task: {message}"
    );
    assert!(message.contains("undelivered hook"), "{message}");
    assert_says_what_to_do(&message);
    assert_eq!(error.report().dispatched_count(), 0);
    assert!(error.into_undispatched().is_empty());
    assert_eq!(labels(&lost), ["a", "<nap>"]);
    assert!(log.runs().is_empty());
}
