//! Executors: fail fast and hand back what was not dispatched (rule 7), custom
//! batch executors reading dispatch options (rule 15), asynchronous executors,
//! the tokio executor, and scope kinds that decide when dispatch happens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::{
    Batch, BlockTasks, BoxError, Dispatch, DispatchFailure, DispatchOptions, Error, Executor, Exit,
    Fate, Intent, Run, Scope, ScopeKind, StateErrorKind, Task, TokioExecutor,
};
use airlock_tests::{Fail, Log, Record, RecordAsync, YieldOnce, chain, dispatch_error, labels};
use serde::{Deserialize, Serialize};

/// Yields once, records its label, then fails. Name: `fail_async`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FailAsync {
    /// The log's key (taken from a `Record` the support log makes).
    log: String,
    label: String,
}

impl Task for FailAsync {
    const NAME: &'static str = "fail_async";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            YieldOnce(false).await;
            let label = self.label.clone();
            Record {
                log: self.log,
                label: self.label,
            }
            .run()
            .wait()?;
            Err::<(), BoxError>(format!("failed: {label}").into())
        })
    }
}

fn fail_async(log: &Log, label: &str) -> FailAsync {
    FailAsync {
        log: log.record("").log,
        label: label.to_owned(),
    }
}

/// Polls `done` until it holds, for spawned work; panics after a generous
/// limit instead of hanging.
async fn eventually(mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("spawned work did not finish within the limit");
}

// ---------------------------------------------------------------------------
// Rule 7 with the inline executor
// ---------------------------------------------------------------------------

/// A failing task stops an inline flush: later intents do not run and are
/// handed back, in order; the error's report counts only what was
/// dispatched.
#[test]
fn inline_failure_stops_the_flush_and_hands_back_the_rest() {
    let log = Log::new();
    let result = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.fail("x"))?;
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(log.record("c"))?;
        Ok(())
    });

    assert_eq!(
        log.runs(),
        ["a", "x"],
        "b and c must not run after x failed"
    );
    let error = dispatch_error(result.unwrap_err());
    assert_eq!(error.failed_task(), "fail");
    assert_eq!(
        error.failed().and_then(|i| i.payload::<Fail>()),
        Some(&log.fail("x")),
        "the inline executor keeps the failed task for a retry"
    );
    assert_eq!(labels(error.not_attempted()), ["b", "c"]);
    assert_eq!(error.report().dispatched_count(), 1);
    assert_eq!(error.report().deferred().count(), 0);
    let message = error.to_string();
    assert!(message.contains("fail"), "{message}");
    assert!(
        message.contains("3 intent(s) were not dispatched"),
        "{message}"
    );
    assert_eq!(labels(&error.into_undispatched()), ["<fail>", "b", "c"]);
}

/// The report in an imperative flush's dispatch error lists, by name, only
/// the intents dispatched before the failure (and the dropped ones), not the
/// failed one or those after it.
#[test]
fn an_imperative_failed_flush_names_only_the_dispatched() {
    let log = Log::new();
    let mut scope = Scope::new()
        .policy(BlockTasks::names(["other"]))
        .enter()
        .unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("dropped")).unwrap();
    airlock::enqueue(log.record("b")).unwrap();
    airlock::enqueue(log.fail("x")).unwrap();
    airlock::enqueue(log.record("c")).unwrap();
    scope.exit().unwrap();
    let error = dispatch_error(scope.flush().unwrap_err());
    let report = error.report();
    assert_eq!(
        report.dispatched().collect::<Vec<_>>(),
        ["record", "record"]
    );
    assert_eq!(report.dispatched_count(), 2);
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert_eq!(
        report.entries().len(),
        3,
        "only dispatched and dropped: {report:?}"
    );
    assert_eq!(labels(&error.into_undispatched()), ["<fail>", "c"]);
    assert_eq!(log.runs(), ["a", "b", "x"]);
}

/// `Error::into_undispatched` hands back the not-attempted intents, which a
/// caller can retry in a new scope; `Error::task` names the failed task.
#[test]
fn undispatched_intents_can_be_retried_in_a_new_scope() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.fail("x"))?;
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(Intent::new(log.record("c")).with_origin("retry-me"))
    })
    .unwrap_err();
    assert_eq!(error.task(), Some("fail"));
    let mut undispatched = error.into_undispatched();
    assert_eq!(labels(&undispatched), ["<fail>", "b", "c"]);
    assert_eq!(undispatched[2].origin(), Some("retry-me"));
    assert_eq!(log.runs(), ["x"]);

    undispatched.remove(0);
    airlock::scope(|| undispatched.into_iter().try_for_each(airlock::enqueue)).unwrap();
    assert_eq!(log.runs(), ["x", "b", "c"]);
}

/// Intents dropped by a policy stay in the failed flush's report, with the
/// dropping policy; the not-dispatched ones are removed from it.
#[test]
fn failed_flush_report_keeps_dropped_entries() {
    let log = Log::new();
    let error = Scope::new()
        .policy(BlockTasks::names(["other"]))
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.other("dropped"))?;
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.fail("x"))?;
            airlock::enqueue(log.record("b"))
        })
        .unwrap_err();
    let error = dispatch_error(error);
    assert_eq!(
        error.report().dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert_eq!(error.report().dispatched_count(), 1);
    assert_eq!(labels(error.not_attempted()), ["b"]);
    assert_eq!(log.runs(), ["a", "x"]);
}

/// An imperative scope whose flush failed is finished: flushing or discarding
/// it again is a `FlushFailed` state error, and nothing runs twice.
#[test]
fn a_failed_flush_cannot_be_repeated() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.fail("x")).unwrap();
    airlock::enqueue(log.record("b")).unwrap();
    scope.exit().unwrap();

    let error = dispatch_error(scope.flush().unwrap_err());
    assert_eq!(labels(error.not_attempted()), ["b"]);

    for again in [scope.flush().map(drop), scope.discard().map(drop)] {
        match again {
            Err(Error::State(state)) => assert_eq!(state.kind(), StateErrorKind::FlushFailed),
            other => panic!("expected FlushFailed, got {other:?}"),
        }
    }
    assert!(scope.is_empty());
    assert_eq!(log.runs(), ["a", "x"]);
}

/// The same with `flush_async`: a failed async flush finishes the scope.
#[tokio::test]
async fn a_failed_async_flush_cannot_be_repeated() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record_async("a")).unwrap();
    airlock::enqueue(fail_async(&log, "x")).unwrap();
    airlock::enqueue(log.record("b")).unwrap();
    scope.exit().unwrap();

    let error = dispatch_error(scope.flush_async().await.unwrap_err());
    assert_eq!(error.failed_task(), "fail_async");
    assert_eq!(labels(error.not_attempted()), ["b"]);
    match scope.flush_async().await {
        Err(Error::State(state)) => assert_eq!(state.kind(), StateErrorKind::FlushFailed),
        other => panic!("expected FlushFailed, got {other:?}"),
    }
    assert_eq!(log.runs(), ["a", "x"]);
}

// ---------------------------------------------------------------------------
// Rule 7 with a custom executor
// ---------------------------------------------------------------------------

/// Refuses the intent at index `refuse` (0-based), sending the others to an
/// outbox with `Dispatch::each`.
struct RefuseAt {
    refuse: usize,
    outbox: Arc<Mutex<Vec<String>>>,
}

impl Executor for RefuseAt {
    fn dispatch(&self, intents: airlock::Intents) -> Dispatch {
        let mut index = 0;
        Dispatch::each(intents, |intent| {
            let this = index;
            index += 1;
            if this == self.refuse {
                return Err(format!("broker refused intent #{this}").into());
            }
            self.outbox.lock().unwrap().push(intent.to_string());
            Ok(())
        })
    }
}

/// A custom executor that refuses intent k hands back the refused intent
/// itself (`failed()`) and those after it; the ones before k were sent.
#[test]
fn dispatch_each_hands_back_the_refused_intent_and_the_rest() {
    let log = Log::new();
    let outbox = Arc::new(Mutex::new(Vec::new()));
    let executor = RefuseAt {
        refuse: 2,
        outbox: outbox.clone(),
    };
    let error = Scope::new()
        .executor(executor)
        .run(|| -> airlock::Result<()> {
            for label in ["a", "b", "c", "d", "e"] {
                airlock::enqueue(log.record(label))?;
            }
            Ok(())
        })
        .unwrap_err();

    assert_eq!(outbox.lock().unwrap().len(), 2);
    assert!(outbox.lock().unwrap()[1].contains("\"b\""));
    assert!(log.runs().is_empty(), "this executor never runs tasks");
    let error = dispatch_error(error);
    assert_eq!(error.failed_task(), "record");
    assert_eq!(
        error.failed().and_then(|i| i.payload::<Record>()),
        Some(&log.record("c"))
    );
    assert_eq!(labels(error.not_attempted()), ["d", "e"]);
    assert_eq!(error.report().dispatched_count(), 2);
    let chain = chain(&*error);
    assert_eq!(
        chain.matches("broker refused intent #2").count(),
        1,
        "{chain}"
    );
}

/// Refusing the first intent dispatches nothing and hands back everything.
#[test]
fn refusing_the_first_intent_hands_back_all_of_them() {
    let log = Log::new();
    let outbox = Arc::new(Mutex::new(Vec::new()));
    let error = Scope::new()
        .executor(RefuseAt {
            refuse: 0,
            outbox: outbox.clone(),
        })
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record("b"))
        })
        .unwrap_err();
    assert!(outbox.lock().unwrap().is_empty());
    let error = dispatch_error(error);
    assert_eq!(error.report().dispatched_count(), 0);
    assert_eq!(labels(&error.into_undispatched()), ["a", "b"]);
}

// ---------------------------------------------------------------------------
// Batch executors and dispatch options (rule 15)
// ---------------------------------------------------------------------------

/// What a batch executor saw of one intent.
#[derive(Debug, PartialEq)]
struct Seen {
    task: &'static str,
    label: String,
    queue: Option<String>,
    max_attempts: Option<u32>,
    priority: Option<i32>,
    delay: Option<Duration>,
    extras: Vec<(String, serde_json::Value)>,
}

#[derive(Default)]
struct BatchRecorder {
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

impl Executor for BatchRecorder {
    fn dispatch(&self, intents: airlock::Intents) -> Dispatch {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut seen = self.seen.lock().unwrap();
        for intent in &intents {
            let options = intent.options();
            seen.push(Seen {
                task: intent.name(),
                label: intent.to_json().unwrap()["label"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                queue: options.queue.as_deref().map(str::to_owned),
                max_attempts: options.max_attempts,
                priority: options.priority,
                delay: options.delay,
                extras: options
                    .extras
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }
        Dispatch::Done(Ok(()))
    }
}

/// A batch-taking executor receives the whole flush in one call, in enqueue
/// order, and reads each intent's dispatch options (queue, attempts, extras).
#[test]
fn a_batch_executor_gets_the_whole_flush_in_one_call_with_options() {
    let log = Log::new();
    let recorder = Arc::new(BatchRecorder::default());
    let report = {
        let mut scope = Scope::new().executor(recorder.clone()).enter().unwrap();
        airlock::enqueue(
            Intent::new(log.record("mail")).with_options(
                DispatchOptions::new()
                    .queue("mail")
                    .max_attempts(5)
                    .priority(-1)
                    .delay(Duration::from_secs(60))
                    .extra("tenant", "acme"),
            ),
        )
        .unwrap();
        airlock::enqueue(log.record("plain")).unwrap();
        airlock::enqueue(
            Intent::new(log.other("bulk"))
                .with_options(DispatchOptions::new().queue("bulk").extra("shard", 3)),
        )
        .unwrap();
        scope.exit().unwrap();
        scope.flush().unwrap()
    };

    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        1,
        "one call per flush"
    );
    assert_eq!(
        report.dispatched().collect::<Vec<_>>(),
        ["record", "record", "other"]
    );
    assert!(
        log.runs().is_empty(),
        "dispatch went to the recorder, not in place"
    );
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(
        *seen,
        [
            Seen {
                task: "record",
                label: "mail".into(),
                queue: Some("mail".into()),
                max_attempts: Some(5),
                priority: Some(-1),
                delay: Some(Duration::from_secs(60)),
                extras: vec![("tenant".into(), "acme".into())],
            },
            Seen {
                task: "record",
                label: "plain".into(),
                queue: None,
                max_attempts: None,
                priority: None,
                delay: None,
                extras: vec![],
            },
            Seen {
                task: "other",
                label: "bulk".into(),
                queue: Some("bulk".into()),
                max_attempts: None,
                priority: None,
                delay: None,
                extras: vec![("shard".into(), 3.into())],
            },
        ]
    );
}

/// Only the intents a policy allows reach the executor; a scope with nothing
/// to dispatch does not call it at all.
#[test]
fn the_executor_sees_only_survivors_and_is_not_called_for_nothing() {
    let log = Log::new();
    let recorder = Arc::new(BatchRecorder::default());
    Scope::new()
        .executor(recorder.clone())
        .policy(BlockTasks::names(["other"]))
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.other("blocked"))?;
            airlock::enqueue(log.record("kept"))
        })
        .unwrap();
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    let labels: Vec<_> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.label.clone())
        .collect();
    assert_eq!(labels, ["kept"]);

    Scope::new()
        .executor(recorder.clone())
        .run(|| Ok::<_, Error>(()))
        .unwrap();
    Scope::new()
        .executor(recorder.clone())
        .policy(BlockTasks::names(["other"]))
        .run(|| airlock::enqueue(log.other("blocked")))
        .unwrap();
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Asynchronous executors
// ---------------------------------------------------------------------------

/// Dispatches asynchronously: yields, then runs each task (awaiting async
/// ones); fails on a task named `fail` like the inline executor.
struct AsyncRunner {
    calls: Arc<AtomicUsize>,
}

impl Executor for AsyncRunner {
    fn dispatch(&self, intents: airlock::Intents) -> Dispatch {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Dispatch::Pending(Box::pin(async move {
            let mut dispatched = 0;
            let mut rest = intents.into_iter();
            while let Some(intent) = rest.next() {
                YieldOnce(false).await;
                let task = intent.name();
                if let Err(error) = intent.run().finish().await {
                    return Err(DispatchFailure {
                        dispatched,
                        failed_task: task,
                        failed: None,
                        error,
                        not_attempted: rest.collect(),
                    });
                }
                dispatched += 1;
            }
            Ok(())
        }))
    }
}

/// An async scope awaits an executor that returns `Dispatch::Pending`: the
/// tasks have run by the time the scope's future completes.
#[tokio::test]
async fn an_async_scope_awaits_a_pending_dispatch() {
    let log = Log::new();
    let calls = Arc::new(AtomicUsize::new(0));
    Scope::new()
        .executor(AsyncRunner {
            calls: calls.clone(),
        })
        .run_async(async {
            airlock::enqueue(log.record("a"))?;
            tokio::task::yield_now().await;
            airlock::enqueue(log.record_async("b"))?;
            assert!(log.runs().is_empty(), "nothing escapes before the flush");
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    assert_eq!(log.runs(), ["a", "b"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A sync scope blocks on an executor's pending dispatch until it is done.
#[test]
fn a_sync_scope_blocks_on_a_pending_dispatch() {
    let log = Log::new();
    let calls = Arc::new(AtomicUsize::new(0));
    Scope::new()
        .executor(AsyncRunner {
            calls: calls.clone(),
        })
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record_async("a"))?;
            airlock::enqueue(log.record("b"))
        })
        .unwrap();
    assert_eq!(log.runs(), ["a", "b"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A pending dispatch that fails hands back the rest, in sync and async
/// scopes alike. (The sync scope runs outside any runtime: inside a
/// current-thread one it would refuse to wait, see `tests/sync_in_runtime.rs`.)
#[test]
fn a_failing_pending_dispatch_hands_back_the_rest() {
    let log = Log::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let body = || -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.fail("x"))?;
        airlock::enqueue(log.record("b"))
    };
    let sync_error = Scope::new()
        .executor(AsyncRunner {
            calls: calls.clone(),
        })
        .run(body)
        .unwrap_err();
    let async_error = Scope::new()
        .executor(AsyncRunner {
            calls: calls.clone(),
        })
        .run_async(async { body() });
    let async_error = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async_error)
        .unwrap_err();
    for error in [sync_error, async_error] {
        let error = dispatch_error(error);
        assert_eq!(error.failed_task(), "fail");
        assert_eq!(error.report().dispatched_count(), 1);
        assert_eq!(labels(&error.into_undispatched()), ["b"]);
    }
    assert_eq!(log.runs(), ["a", "x", "a", "x"]);
}

/// The inline executor runs async tasks in order with sync ones, in a sync
/// scope (blocking on them) ...
#[test]
fn inline_runs_async_tasks_in_a_sync_scope() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.record_async("b"))?;
        airlock::enqueue(log.record("c"))?;
        airlock::enqueue(log.record_async("d"))
    })
    .unwrap();
    assert_eq!(log.runs(), ["a", "b", "c", "d"]);
}

/// ... and in an async scope (awaiting them), in order.
#[tokio::test]
async fn inline_runs_async_tasks_in_an_async_scope() {
    let log = Log::new();
    airlock::scope_async(async {
        airlock::enqueue(log.record_async("a"))?;
        airlock::enqueue(log.record("b"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record_async("c"))?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["a", "b", "c"]);
}

/// An intent handed back by a failed flush and enqueued again is judged where
/// it lands: it forgets the scopes it was captured from on the way out.
#[test]
fn a_retried_intent_is_judged_afresh() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        Scope::new()
            .policy(BlockTasks::of::<airlock_tests::Other>())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.fail("x"))?;
                airlock::enqueue(log.record("b"))
            })
    })
    .unwrap_err();
    let handed_back = error.into_undispatched();
    assert!(handed_back[0].is_captured());
    assert_eq!(
        handed_back[0].policies().count(),
        1,
        "carries the inner policy"
    );
    let (_, again) =
        airlock::capture(|| handed_back.iter().cloned().try_for_each(airlock::enqueue));
    assert!(!again[0].is_captured());
    assert_eq!(again[0].policies().count(), 0);
    // The same where the buffer has room, the common enqueue's path.
    let (_, again) = airlock::capture(|| {
        airlock::enqueue(log.record("a"))?;
        handed_back.into_iter().try_for_each(airlock::enqueue)
    });
    assert!(!again[1].is_captured());
    assert_eq!(again[1].policies().count(), 0);
}

/// An intent taken from inside a local policy region and enqueued again
/// outside it leaves the region behind.
#[test]
fn a_retried_intent_leaves_its_region_behind() {
    let log = Log::new();
    let (_, inside) = airlock::capture(|| {
        airlock::with_policy(BlockTasks::of::<airlock_tests::Other>(), || {
            airlock::enqueue(log.record("a"))
        })
    });
    assert_eq!(inside[0].policies().count(), 1, "carries its region");
    let (_, outside) = airlock::capture(|| {
        airlock::enqueue(log.record("b"))?;
        inside.into_iter().try_for_each(airlock::enqueue)
    });
    assert_eq!(outside[1].policies().count(), 0);
}

/// Fail fast holds after the inline executor switched to async mode: a
/// failing async task stops the rest, which are handed back.
#[test]
fn inline_async_failure_hands_back_the_rest() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record_async("a"))?;
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(fail_async(&log, "x"))?;
        airlock::enqueue(log.record_async("c"))?;
        airlock::enqueue(log.record("d"))
    })
    .unwrap_err();
    assert_eq!(log.runs(), ["a", "b", "x"]);
    let error = dispatch_error(error);
    assert_eq!(error.failed_task(), "fail_async");
    assert_eq!(error.report().dispatched_count(), 2);
    let undispatched = error.into_undispatched();
    assert_eq!(undispatched.len(), 3);
    assert_eq!(undispatched[0].name(), "fail_async");
    assert_eq!(
        undispatched[1].payload::<RecordAsync>(),
        Some(&log.record_async("c"))
    );
    assert_eq!(undispatched[2].payload::<Record>(), Some(&log.record("d")));
}

// ---------------------------------------------------------------------------
// The tokio executor
// ---------------------------------------------------------------------------

/// `TokioExecutor::current()` on a multi-thread runtime spawns every escaping
/// task, sync and async, and they all run (eventually).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_executor_runs_tasks_on_the_current_runtime() {
    let log = Log::new();
    let report = {
        let mut scope = Scope::new()
            .executor(TokioExecutor::current())
            .enter()
            .unwrap();
        airlock::enqueue(log.record("sync-1")).unwrap();
        airlock::enqueue(log.record_async("async-1")).unwrap();
        airlock::enqueue(log.record("sync-2")).unwrap();
        scope.exit().unwrap();
        scope.flush().unwrap()
    };
    assert_eq!(report.dispatched_count(), 3);

    Scope::new()
        .executor(TokioExecutor::current())
        .run_async(async {
            tokio::task::yield_now().await;
            airlock::enqueue(log.record_async("async-2"))
        })
        .await
        .unwrap();

    eventually(|| log.runs().len() == 4).await;
    let mut runs = log.runs();
    runs.sort();
    assert_eq!(runs, ["async-1", "async-2", "sync-1", "sync-2"]);
}

/// `TokioExecutor::new(handle)` spawns on the given runtime even when the
/// flush happens on a thread with no runtime.
#[test]
fn tokio_executor_with_a_handle_works_from_a_plain_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let log = Log::new();
    Scope::new()
        .executor(TokioExecutor::new(runtime.handle().clone()))
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record_async("b"))
        })
        .unwrap();
    runtime.block_on(eventually(|| log.runs().len() == 2));
    let mut runs = log.runs();
    runs.sort();
    assert_eq!(runs, ["a", "b"]);
}

/// `TokioExecutor::current()` with no runtime fails the flush and hands back
/// every intent, the first one as the failed intent; nothing runs.
#[test]
fn tokio_executor_without_a_runtime_hands_back_everything() {
    let log = Log::new();
    let error = Scope::new()
        .executor(TokioExecutor::current())
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record_async("b"))?;
            airlock::enqueue(log.record("c"))
        })
        .unwrap_err();
    assert!(log.runs().is_empty());
    let message = chain(&error);
    assert!(message.contains("no tokio runtime"), "{message}");
    let error = dispatch_error(error);
    assert_eq!(error.report().dispatched_count(), 0);
    assert_eq!(
        error.failed().and_then(|i| i.payload::<Record>()),
        Some(&log.record("a"))
    );
    let undispatched = error.into_undispatched();
    assert_eq!(undispatched.len(), 3);
    assert!(undispatched[1].is::<RecordAsync>());
    assert_eq!(undispatched[2].payload::<Record>(), Some(&log.record("c")));
}

// ---------------------------------------------------------------------------
// ScopeKind::schedule: deferred dispatch (e.g. until a database commit)
// ---------------------------------------------------------------------------

/// Keeps the flushed batch, as a transaction scope would until its commit.
#[derive(Clone, Default)]
struct AfterCommit {
    pending: Arc<Mutex<Option<Batch>>>,
}

impl ScopeKind for AfterCommit {
    fn schedule(&self, batch: Batch) -> Option<Batch> {
        let previous = self.pending.lock().unwrap().replace(batch);
        assert!(previous.is_none(), "one batch per transaction");
        None
    }
}

/// A kind that defers dispatch: the flush reports every allowed intent as
/// deferred and nothing runs; dispatching the kept batch later (the commit)
/// runs exactly the filtered intents, in order.
#[test]
fn a_deferred_batch_runs_at_commit() {
    let log = Log::new();
    let kind = AfterCommit::default();
    let mut scope = Scope::new()
        .kind(kind.clone())
        .policy(BlockTasks::names(["other"]))
        .enter()
        .unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("blocked")).unwrap();
    airlock::enqueue(log.record("b")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();

    assert_eq!(report.deferred().collect::<Vec<_>>(), ["record", "record"]);
    assert_eq!(report.dispatched_count(), 0);
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert!(log.runs().is_empty(), "nothing runs before the commit");
    assert!(matches!(
        scope.flush(),
        Err(Error::State(ref s)) if s.kind() == StateErrorKind::AlreadyFlushed
    ));

    let batch = kind
        .pending
        .lock()
        .unwrap()
        .take()
        .expect("the batch was kept");
    assert_eq!(labels(batch.intents()), ["a", "b"]);
    let committed = batch.dispatch().unwrap();
    assert_eq!(
        committed.dispatched().collect::<Vec<_>>(),
        ["record", "record"]
    );
    assert_eq!(log.runs(), ["a", "b"]);
}

/// Discarding a deferred batch (the rollback) runs nothing and says how many
/// intents were dropped.
#[test]
fn a_deferred_batch_is_dropped_at_rollback() {
    let log = Log::new();
    let kind = AfterCommit::default();
    Scope::new()
        .kind(kind.clone())
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record_async("b"))
        })
        .unwrap();
    assert!(log.runs().is_empty());
    let batch = kind
        .pending
        .lock()
        .unwrap()
        .take()
        .expect("the batch was kept");
    assert_eq!(batch.discard(), 2);
    assert!(log.runs().is_empty());
}

/// A deferring kind is not asked to schedule when the body fails: there is
/// nothing to commit.
#[test]
fn a_failed_body_never_reaches_schedule() {
    let log = Log::new();
    let kind = AfterCommit::default();
    let result = Scope::new()
        .kind(kind.clone())
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            Err(Error::TaskFailed {
                task: "simulated",
                source: "simulated failure".into(),
            })
        });
    assert!(result.is_err());
    assert!(kind.pending.lock().unwrap().is_none());
    assert!(log.runs().is_empty());
}

/// A deferred batch dispatched from an async context is awaited there, and
/// a deferred batch dispatched later can still fail fast and hand back.
#[tokio::test]
async fn a_deferred_batch_dispatches_async_and_fails_fast() {
    let log = Log::new();
    let kind = AfterCommit::default();
    Scope::new()
        .kind(kind.clone())
        .run_async(async {
            airlock::enqueue(log.record_async("a"))?;
            airlock::enqueue(log.fail("x"))?;
            airlock::enqueue(log.record("b"))
        })
        .await
        .unwrap();
    assert!(log.runs().is_empty());
    let batch = kind
        .pending
        .lock()
        .unwrap()
        .take()
        .expect("the batch was kept");
    let error = dispatch_error(batch.dispatch_async().await.unwrap_err());
    assert_eq!(log.runs(), ["a", "x"]);
    assert_eq!(labels(&error.into_undispatched()), ["<fail>", "b"]);
}

// ---------------------------------------------------------------------------
// ScopeKind::should_flush
// ---------------------------------------------------------------------------

/// Flushes on success and on failure (alerting), recording what it was asked.
#[derive(Clone, Default)]
struct FlushOnError {
    asked: Arc<Mutex<Vec<Exit>>>,
}

impl ScopeKind for FlushOnError {
    fn should_flush(&self, exit: Exit) -> bool {
        self.asked.lock().unwrap().push(exit);
        matches!(exit, Exit::Success | Exit::Failure)
    }
}

/// Says yes to everything, including what it must never be allowed to flush.
struct AlwaysYes;

impl ScopeKind for AlwaysYes {
    fn should_flush(&self, _: Exit) -> bool {
        true
    }
}

/// Says no to everything: even a successful body discards.
struct NeverFlush;

impl ScopeKind for NeverFlush {
    fn should_flush(&self, _: Exit) -> bool {
        false
    }
}

/// `should_flush` can flush on `Err` (`Exit::Failure`): the intents run and
/// the body's own error is returned unchanged.
#[test]
fn should_flush_can_flush_on_error() {
    let log = Log::new();
    let kind = FlushOnError::default();
    let result = Scope::new()
        .kind(kind.clone())
        .run(|| -> anyhow::Result<()> {
            airlock::enqueue(log.record("page-on-call"))?;
            anyhow::bail!("the request failed")
        });
    assert_eq!(result.unwrap_err().to_string(), "the request failed");
    assert_eq!(log.runs(), ["page-on-call"]);
    assert_eq!(*kind.asked.lock().unwrap(), [Exit::Failure]);
}

/// `should_flush` returning false discards even a successful body.
#[test]
fn should_flush_can_refuse_a_success() {
    let log = Log::new();
    Scope::new()
        .kind(NeverFlush)
        .run(|| airlock::enqueue(log.record("a")))
        .unwrap();
    assert!(log.runs().is_empty());
}

/// A panic asks `should_flush` too (rule 3): the default answer discards, a
/// kind that says yes flushes (an alerting scope reports the crash), and the
/// panic keeps unwinding either way.
#[test]
fn should_flush_is_consulted_on_panic() {
    let log = Log::new();
    let kind = FlushOnError::default();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Scope::new()
            .kind(kind.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                panic!("boom");
            })
    }));
    assert!(panicked.is_err(), "the panic continues to unwind");
    assert_eq!(*kind.asked.lock().unwrap(), [Exit::Panic]);
    assert!(log.runs().is_empty(), "FlushOnError discards on a panic");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Scope::new().kind(AlwaysYes).run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("b"))?;
            panic!("boom");
        })
    }));
    assert!(panicked.is_err(), "the panic continues to unwind");
    assert_eq!(log.runs(), ["b"], "a kind that flushes on panic flushes");
}

/// A cancelled async scope asks `should_flush` with `Exit::Cancelled`.
#[tokio::test]
async fn should_flush_is_consulted_on_cancellation() {
    let log = Log::new();
    let kind = FlushOnError::default();
    let future = Scope::new().kind(kind.clone()).run_async(async {
        airlock::enqueue(log.record("a"))?;
        std::future::pending::<()>().await;
        Ok::<_, Error>(())
    });
    let yes = Scope::new().kind(AlwaysYes).run_async(async {
        airlock::enqueue(log.record("b"))?;
        std::future::pending::<()>().await;
        Ok::<_, Error>(())
    });
    let timed_out = tokio::time::timeout(Duration::from_millis(10), async {
        tokio::join!(future, yes)
    })
    .await;
    assert!(timed_out.is_err());
    assert_eq!(*kind.asked.lock().unwrap(), [Exit::Cancelled]);
    assert_eq!(log.runs(), ["b"], "only the kind that says yes flushes");
}

/// The `Fate` of an entry is visible per intent in the report.
#[test]
fn report_entries_carry_each_fate_in_order() {
    let log = Log::new();
    let mut scope = Scope::new()
        .policy(BlockTasks::names(["other"]))
        .enter()
        .unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("b")).unwrap();
    airlock::enqueue(log.record("c")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    let fates: Vec<_> = report.entries().map(|e| (e.task, e.fate)).collect();
    assert_eq!(
        fates,
        [
            ("record", Fate::Dispatched),
            (
                "other",
                Fate::Dropped {
                    policy: "BlockTasks"
                }
            ),
            ("record", Fate::Dispatched),
        ]
    );
    assert_eq!(log.runs(), ["a", "c"]);
}
