//! `TokioExecutor`: spawn failures hand intents back, task failures and
//! cancellations reach the undelivered hook, and `shutdown` drains what is in
//! flight (issue 6, items 4 and 7).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use airlock::{BoxError, Defaults, Intent, Run, Scope, Task, TokioExecutor, Undelivered};
use airlock_tests::{Log, Record, chain, dispatch_error, labels};
use serde::{Deserialize, Serialize};

/// Sleeps `ms` on tokio's timer, then records its label. Name:
/// `sleep_then_record`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SleepThenRecord {
    record: Record,
    ms: u64,
}

impl Task for SleepThenRecord {
    const NAME: &'static str = "sleep_then_record";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            self.record.run().wait()
        })
    }
}

/// Records its label, then never finishes. Name: `forever`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Forever {
    record: Record,
}

impl Task for Forever {
    const NAME: &'static str = "forever";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            self.record.run().wait()?;
            std::future::pending::<Result<(), BoxError>>().await
        })
    }
}

/// Gates, by name, that gated tasks wait for: a test opens its gate once
/// `shutdown` is waiting, so the tasks end while it does.
fn open_gates() -> &'static Mutex<HashSet<String>> {
    static GATES: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    GATES.get_or_init(Default::default)
}

fn is_open(gate: &str) -> bool {
    open_gates().lock().unwrap().contains(gate)
}

/// What a gated task does once its gate opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Then {
    Record(Record),
    Fail(Record),
    Panic(String),
}

impl Then {
    fn run(self) -> Result<(), BoxError> {
        match self {
            Then::Record(record) => record.run().wait(),
            Then::Fail(record) => {
                let label = record.label.clone();
                record.run().wait()?;
                Err(format!("failed: {label}").into())
            }
            Then::Panic(message) => panic!("{message}"),
        }
    }
}

/// Waits (blocking) for its gate, then does `then`. Name: `gated_sync`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct GatedSync {
    gate: String,
    then: Then,
}

impl Task for GatedSync {
    const NAME: &'static str = "gated_sync";

    fn run(self) -> Run {
        for _ in 0..20_000 {
            if is_open(&self.gate) {
                return Run::Done(self.then.run());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the gate never opened");
    }
}

/// Waits (asynchronously) for its gate, then does `then`. Name:
/// `gated_async`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct GatedAsync {
    gate: String,
    then: Then,
}

impl Task for GatedAsync {
    const NAME: &'static str = "gated_async";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            for _ in 0..20_000 {
                if is_open(&self.gate) {
                    return self.then.run();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("the gate never opened");
        })
    }
}

fn sleep_then_record(log: &Log, label: &str, ms: u64) -> SleepThenRecord {
    SleepThenRecord {
        record: log.record(label),
        ms,
    }
}

fn forever(log: &Log, label: &str) -> Forever {
    Forever {
        record: log.record(label),
    }
}

/// What the undelivered hook received: `(cause, error, intents)`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Vec<Intent>)>>>;

/// Defaults whose undelivered hook records into the returned list.
fn recording_hook() -> (Defaults, Seen) {
    let seen = Seen::default();
    let sink = seen.clone();
    let defaults = Defaults::new().on_undelivered(move |lost: Undelivered| {
        let cause = lost.cause().to_owned();
        let error = lost.error().map(ToString::to_string);
        sink.lock()
            .unwrap()
            .push((cause, error, lost.into_intents()));
    });
    (defaults, seen)
}

/// Waits on the runtime until `done` holds; panics instead of hanging.
fn wait_until(runtime: &tokio::runtime::Runtime, mut done: impl FnMut() -> bool) {
    runtime.block_on(async {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the condition did not hold within the limit");
    });
}

// ---------------------------------------------------------------------------
// Item 4: a runtime that has shut down
// ---------------------------------------------------------------------------

/// `TokioExecutor::new(handle)` whose runtime has shut down: tokio cancels
/// every spawn at once, so the flush fails and hands back every intent, in
/// order; nothing runs and nothing reaches the undelivered hook (the caller
/// has them).
#[test]
fn a_shut_down_runtime_fails_the_flush_and_hands_back_everything() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    drop(runtime);

    let log = Log::new();
    let (defaults, seen) = recording_hook();
    let executor = TokioExecutor::new(handle);
    let result = airlock::with_defaults(defaults, || {
        Scope::new()
            .executor(executor.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.record_async("b"))?;
                airlock::enqueue(log.record("c"))
            })
    });

    let error = dispatch_error(result.unwrap_err());
    let message = chain(&*error);
    assert!(message.contains("runtime is shut down"), "{message}");
    assert!(message.contains("`record`"), "names the task: {message}");
    assert_eq!(error.failed_task(), "record");
    assert_eq!(error.report().dispatched_count(), 0);
    assert_eq!(
        error.failed().and_then(|i| i.payload::<Record>()),
        Some(&log.record("a"))
    );
    let back = error.into_undispatched();
    assert_eq!(back.len(), 3);
    assert_eq!(labels(&back[..1]), ["a"]);
    assert!(back[1].is::<airlock_tests::RecordAsync>());
    assert_eq!(labels(&back[2..]), ["c"]);
    assert!(log.runs().is_empty(), "nothing ran");
    assert!(
        seen.lock().unwrap().is_empty(),
        "handed back, not to the hook"
    );
    assert_eq!(executor.in_flight(), 0);
}

/// Runtimes that [`ShutsDownWhenCloned`] drops, by key.
fn runtimes() -> &'static Mutex<std::collections::HashMap<String, tokio::runtime::Runtime>> {
    static RUNTIMES: OnceLock<Mutex<std::collections::HashMap<String, tokio::runtime::Runtime>>> =
        OnceLock::new();
    RUNTIMES.get_or_init(Default::default)
}

/// Drops the runtime stored under `key` when it is cloned, which
/// `TokioExecutor` does just before it spawns it: the runtime shuts down in
/// the middle of a batch. Name: `shuts_down_when_cloned`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ShutsDownWhenCloned {
    key: String,
}

impl Clone for ShutsDownWhenCloned {
    fn clone(&self) -> Self {
        let runtime = runtimes().lock().unwrap().remove(&self.key);
        drop(runtime);
        ShutsDownWhenCloned {
            key: self.key.clone(),
        }
    }
}

impl Task for ShutsDownWhenCloned {
    const NAME: &'static str = "shuts_down_when_cloned";

    fn run(self) -> Run {
        Run::ok()
    }
}

/// A runtime that shuts down part way through a batch: what was spawned
/// before stays spawned (and counted), the intent whose spawn tokio
/// cancelled is handed back with the rest.
#[test]
fn a_runtime_shut_down_mid_batch_hands_back_the_rest() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = TokioExecutor::new(runtime.handle().clone());
    let log = Log::new();
    let key = format!("{log:?}");
    runtimes().lock().unwrap().insert(key.clone(), runtime);
    let (defaults, seen) = recording_hook();

    let error = airlock::with_defaults(defaults, || {
        Scope::new()
            .executor(executor.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.record_async("b"))?;
                airlock::enqueue(ShutsDownWhenCloned { key: key.clone() })?;
                airlock::enqueue(log.record("c"))
            })
    })
    .unwrap_err();
    assert!(
        runtimes().lock().unwrap().is_empty(),
        "the runtime was dropped"
    );
    let error = dispatch_error(error);
    assert_eq!(error.failed_task(), "shuts_down_when_cloned");
    assert_eq!(error.report().dispatched_count(), 2, "a and b were spawned");
    assert!(chain(&*error).contains("runtime is shut down"));
    let back = error.into_undispatched();
    assert_eq!(labels(&back), ["<shuts_down_when_cloned>", "c"]);
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .flat_map(|(_, _, intents)| intents)
            .any(|intent| intent.is::<airlock_tests::RecordAsync>()),
        "b, spawned and then cancelled, went to the hook: {seen:?}"
    );
}

/// Tasks spawned on a runtime that shuts down before they start are
/// cancelled by tokio after the flush returned: their intents reach the
/// undelivered hook in force where the flush ran, though the runtime is
/// dropped elsewhere.
#[test]
fn tasks_cancelled_before_they_start_reach_the_hook() {
    // A current-thread runtime nobody drives: spawned tasks wait in its queue.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = Log::new();
    let (defaults, seen) = recording_hook();
    let executor = TokioExecutor::new(runtime.handle().clone());
    let report = airlock::with_defaults(defaults, || {
        let mut scope = Scope::new().executor(executor.clone()).enter().unwrap();
        airlock::enqueue(log.record_async("a")).unwrap();
        airlock::enqueue(log.record("b")).unwrap();
        scope.exit().unwrap();
        scope.flush().unwrap()
    });
    assert_eq!(report.dispatched_count(), 2);
    // `b` is a synchronous task on tokio's blocking pool, which may start it
    // before the runtime goes away.
    drop(runtime);

    assert!(!log.runs().contains(&"a".to_owned()), "a never started");
    let seen = seen.lock().unwrap();
    let reported: Vec<Intent> = seen.iter().flat_map(|(_, _, i)| i.clone()).collect();
    assert!(
        reported
            .iter()
            .any(|i| i.is::<airlock_tests::RecordAsync>()),
        "the cancelled task reached the hook: {seen:?}"
    );
    for (cause, _, _) in seen.iter() {
        assert!(cause.contains("cancelled before it started"), "{cause}");
    }
    let ran_b = log.runs().contains(&"b".to_owned());
    assert_eq!(
        reported.len(),
        if ran_b { 1 } else { 2 },
        "each intent ends once: run or reported"
    );
    assert_eq!(executor.in_flight(), 0);
}

/// A task that started and is cancelled part way (its runtime shut down)
/// reaches the hook, which says it may have had part of its effect.
#[test]
fn a_task_cancelled_part_way_reaches_the_hook() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = Log::new();
    let (defaults, seen) = recording_hook();
    let executor = TokioExecutor::new(runtime.handle().clone());
    airlock::with_defaults(defaults, || {
        Scope::new()
            .executor(executor.clone())
            .run(|| airlock::enqueue(forever(&log, "started")))
    })
    .unwrap();
    wait_until(&runtime, || log.runs() == ["started"]);
    assert_eq!(executor.in_flight(), 1);
    drop(runtime);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (cause, _, intents) = &seen[0];
    assert!(cause.contains("before it finished"), "{cause}");
    assert!(cause.contains("part of its effect"), "{cause}");
    assert_eq!(
        intents[0].payload::<Forever>(),
        Some(&forever(&log, "started"))
    );
    assert_eq!(executor.in_flight(), 0);
}

// ---------------------------------------------------------------------------
// Item 7: failures reach the hook; graceful drain
// ---------------------------------------------------------------------------

/// A task that fails or panics under `TokioExecutor` hands its intent (a
/// copy taken before it ran) to the undelivered hook in force where the
/// flush ran, with the error, though it fails on another thread; the report
/// of a `shutdown` that waited for it names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_failures_reach_the_hook_captured_at_dispatch() {
    let log = Log::new();
    let gate = format!("{log:?}");
    let (defaults, seen) = recording_hook();
    let executor = TokioExecutor::current();
    let failing = GatedSync {
        gate: gate.clone(),
        then: Then::Fail(log.record("sync-failure")),
    };
    let panicking = GatedAsync {
        gate: gate.clone(),
        then: Then::Panic("async boom".into()),
    };
    airlock::with_defaults(defaults, || {
        Scope::new()
            .executor(executor.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(failing.clone())?;
                airlock::enqueue(panicking.clone())?;
                airlock::enqueue(GatedAsync {
                    gate: gate.clone(),
                    then: Then::Record(log.record("fine")),
                })
            })
    })
    .unwrap();
    assert_eq!(executor.in_flight(), 3);

    // Open the gate once `shutdown` is waiting (`biased`: polled first).
    let (report, ()) = tokio::join!(biased; executor.shutdown(Duration::from_secs(20)), async {
        open_gates().lock().unwrap().insert(gate.clone());
    });
    assert!(report.unfinished().is_empty(), "{report:?}");
    assert_eq!(report.completed(), 1);
    let mut failed: Vec<_> = report
        .failed()
        .iter()
        .map(|f| (f.task(), f.error().to_owned()))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            (
                "gated_async",
                "task `gated_async` panicked: async boom".to_owned()
            ),
            ("gated_sync", "failed: sync-failure".to_owned()),
        ]
    );
    assert!(!report.is_clean());

    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(_, _, intents)| intents[0].name());
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (cause, error, intents) = &seen[1];
    assert!(
        cause.contains("failed after TokioExecutor spawned it"),
        "{cause}"
    );
    assert_eq!(error.as_deref(), Some("failed: sync-failure"));
    assert_eq!(
        intents[0].payload::<GatedSync>(),
        Some(&failing),
        "the failed intent itself, to retry"
    );
    let (_, error, intents) = &seen[0];
    assert!(
        error.as_deref().unwrap().contains("async boom"),
        "{error:?}"
    );
    assert_eq!(intents[0].payload::<GatedAsync>(), Some(&panicking));
    let mut runs = log.runs();
    runs.sort();
    assert_eq!(runs, ["fine", "sync-failure"]);
}

/// `shutdown` waits for the tasks in flight: when it returns, every effect
/// has happened, and the report counts them.
#[tokio::test]
async fn shutdown_waits_for_tasks_in_flight() {
    let log = Log::new();
    let executor = TokioExecutor::current();
    Scope::new()
        .executor(executor.clone())
        .run_async(async {
            airlock::enqueue(sleep_then_record(&log, "slow", 50))?;
            airlock::enqueue(log.record("sync"))?;
            airlock::enqueue(sleep_then_record(&log, "slower", 80))
        })
        .await
        .unwrap();
    assert!(log.runs().len() < 3, "the flush does not wait");
    assert!(executor.in_flight() > 0);

    let report = executor.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.completed(), 3);
    let mut runs = log.runs();
    runs.sort();
    assert_eq!(runs, ["slow", "slower", "sync"]);
    assert_eq!(executor.in_flight(), 0);
}

/// A task that does not finish by the deadline is aborted and handed back in
/// the report, and never reaches the hook; what finished is counted; a flush
/// after `shutdown` fails and hands back its intents.
#[tokio::test]
async fn shutdown_hands_back_what_does_not_finish_in_time() {
    let log = Log::new();
    let (defaults, seen) = recording_hook();
    let executor = TokioExecutor::current();
    airlock::with_defaults(defaults.clone(), || {
        Scope::new()
            .executor(executor.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(forever(&log, "stuck"))?;
                airlock::enqueue(log.record_async("quick"))
            })
    })
    .unwrap();

    let report = executor.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.completed(), 1);
    assert!(report.failed().is_empty());
    assert!(!report.is_clean());
    assert_eq!(report.unfinished().len(), 1);
    let unfinished = report.into_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(
        unfinished[0].payload::<Forever>(),
        Some(&forever(&log, "stuck"))
    );
    assert_eq!(executor.in_flight(), 0);

    let error = airlock::with_defaults(defaults, || {
        Scope::new()
            .executor(executor.clone())
            .run(|| airlock::enqueue(log.record("late")))
    })
    .unwrap_err();
    let message = chain(&error);
    assert!(message.contains("was shut down"), "{message}");
    assert_eq!(labels(&error.into_undispatched()), ["late"]);

    tokio::task::yield_now().await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the aborted task is handed back, not reported twice"
    );
    let mut runs = log.runs();
    runs.sort();
    assert_eq!(runs, ["quick", "stuck"]);
}
