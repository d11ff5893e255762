//! tracing: every flush and discard emits an event on target `airlock` with
//! counts, `LogOnFlush` logs each intent with its task name, and failures and
//! lost work are logged as errors and warnings.
//!
//! Each test installs its own subscriber with `tracing::subscriber::with_default`
//! (thread-local), so tests running in parallel do not see each other's events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use airlock::{
    Batch, BlockTasks, BoxError, DropAll, Error, Exit, LogOnFlush, Run, Scope, ScopeKind, Task,
};
use airlock_tests::{Log, YieldOnce};
use serde::{Deserialize, Serialize};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// The message of the default undelivered hook's event.
const UNDELIVERED: &str = "undelivered intent: replay it from this payload";

/// One captured event.
#[derive(Clone, Debug)]
struct Event {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Event {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// The events with this message, from target `airlock`.
    fn named(&self, message: &str) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target == "airlock" && e.message() == message)
            .cloned()
            .collect()
    }

    /// airlock's `WARN` events.
    fn warnings(&self) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.level == Level::WARN && e.target == "airlock")
            .cloned()
            .collect()
    }

    /// Exactly one event with this message; panics with all events otherwise.
    fn one(&self, message: &str) -> Event {
        let found = self.named(message);
        assert_eq!(
            found.len(),
            1,
            "expected one {message:?} event, got {:#?}",
            self.0.lock().unwrap()
        );
        found.into_iter().next().unwrap()
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut FieldVisitor(&mut fields));
        self.0.lock().unwrap().push(Event {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// Runs `f` with a subscriber that captures every event on this thread.
fn capture_events<R>(f: impl FnOnce() -> R) -> (R, Events) {
    let events = Events::default();
    let subscriber = Registry::default().with(events.clone());
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, events)
}

/// Runs `future` on a current-thread runtime under a capturing subscriber, so
/// events from tasks the runtime polls on this thread are captured too.
fn capture_events_async<F: Future>(future: F) -> (F::Output, Events) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    capture_events(|| runtime.block_on(future))
}

/// Yields once, then fails. Name: `fail_async`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FailAsync;

impl Task for FailAsync {
    const NAME: &'static str = "fail_async";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async {
            YieldOnce(false).await;
            Err::<(), BoxError>("async task broke".into())
        })
    }
}

/// A flush emits one "scope flushed" event (target `airlock`) with the
/// numbers allowed and dropped by policies and captured by an ancestor.
#[test]
fn flush_emits_counts() {
    let log = Log::new();
    let ((), events) = capture_events(|| {
        Scope::new()
            .policy(BlockTasks::names(["other"]))
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.other("b"))?;
                airlock::enqueue(log.record("c"))
            })
            .unwrap();
    });
    let flushed = events.one("scope flushed");
    assert_eq!(flushed.field("allowed"), Some("2"));
    assert_eq!(flushed.field("dropped"), Some("1"));
    assert_eq!(flushed.field("captured"), Some("0"));
    assert!(events.named("scope discarded").is_empty());
    assert_eq!(log.runs(), ["a", "c"]);
}

/// A nested scope's flush reports what its ancestor captured; the outer flush
/// then reports them as its own to judge.
#[test]
fn nested_flush_reports_captured() {
    let log = Log::new();
    let ((), events) = capture_events(|| {
        Scope::new()
            .policy(DropAll)
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("outer"))?;
                airlock::scope(|| -> airlock::Result<()> {
                    airlock::enqueue(log.record("x"))?;
                    airlock::enqueue(log.record("y"))
                })
            })
            .unwrap();
    });
    let flushed = events.named("scope flushed");
    assert_eq!(flushed.len(), 2, "{flushed:#?}");
    let (inner, outer) = (&flushed[0], &flushed[1]);
    assert_eq!(inner.field("captured"), Some("2"));
    assert_eq!(inner.field("allowed"), Some("0"));
    assert_eq!(inner.field("dropped"), Some("0"));
    assert_eq!(outer.field("captured"), Some("0"));
    assert_eq!(outer.field("allowed"), Some("0"));
    assert_eq!(outer.field("dropped"), Some("3"));
    assert!(log.runs().is_empty());

    // More than a few intents leave the nested scope as one chunk, by
    // another path: the count is the same.
    let ((), events) = capture_events(|| {
        Scope::new()
            .policy(DropAll)
            .run(|| {
                airlock::scope(|| -> airlock::Result<()> {
                    (0..20).try_for_each(|_| airlock::enqueue(log.record("x")))
                })
            })
            .unwrap();
    });
    let flushed = events.named("scope flushed");
    assert_eq!(flushed.len(), 2, "{flushed:#?}");
    assert_eq!(flushed[0].field("captured"), Some("20"));
    assert_eq!(flushed[1].field("dropped"), Some("20"));
}

/// A failed body emits one "scope discarded" event with the number of
/// intents discarded and how the body ended, and no "scope flushed".
#[test]
fn discard_emits_counts() {
    let log = Log::new();
    let (result, events) = capture_events(|| {
        airlock::scope(|| -> airlock::Result<()> {
            for label in ["a", "b", "c"] {
                airlock::enqueue(log.record(label))?;
            }
            Err(Error::TaskFailed {
                task: "simulated",
                source: "simulated failure".into(),
            })
        })
    });
    assert!(result.is_err());
    let discarded = events.one("scope discarded");
    assert_eq!(discarded.field("discarded"), Some("3"));
    assert_eq!(
        discarded.field("exit"),
        Some(&*format!("{:?}", Exit::Failure))
    );
    assert!(events.named("scope flushed").is_empty());
}

/// A panic and a cancellation are discards too, and say so.
#[test]
fn panic_and_cancellation_emit_discard_events() {
    let log = Log::new();
    let (panicked, events) = capture_events(|| {
        std::panic::catch_unwind(|| {
            airlock::scope(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.record("b"))?;
                panic!("boom")
            })
        })
    });
    assert!(panicked.is_err());
    let discarded = events.one("scope discarded");
    assert_eq!(discarded.field("discarded"), Some("2"));
    assert_eq!(discarded.field("exit"), Some("Panic"));

    let (timed_out, events) = capture_events_async(async {
        tokio::time::timeout(
            std::time::Duration::from_millis(5),
            airlock::scope_async(async {
                airlock::enqueue(log.record("c"))?;
                std::future::pending::<()>().await;
                Ok::<_, Error>(())
            }),
        )
        .await
    });
    assert!(timed_out.is_err());
    let discarded = events.one("scope discarded");
    assert_eq!(discarded.field("discarded"), Some("1"));
    assert_eq!(discarded.field("exit"), Some("Cancelled"));
    assert!(log.runs().is_empty());
}

/// An async scope emits the same flush event as a sync one.
#[test]
fn async_flush_emits_counts() {
    let log = Log::new();
    let (result, events) = capture_events_async(async {
        airlock::scope_async(async {
            airlock::enqueue(log.record("a"))?;
            tokio::task::yield_now().await;
            airlock::enqueue(log.record_async("b"))
        })
        .await
    });
    result.unwrap();
    let flushed = events.one("scope flushed");
    assert_eq!(flushed.field("allowed"), Some("2"));
    assert_eq!(flushed.field("dropped"), Some("0"));
    assert_eq!(log.runs(), ["a", "b"]);
}

/// `LogOnFlush` logs each intent at flush, in order, with its task name and
/// the call-like rendering of the intent, at INFO by default.
#[test]
fn log_on_flush_logs_each_intent() {
    let log = Log::new();
    let ((), events) = capture_events(|| {
        Scope::new()
            .policy(LogOnFlush::new())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("first"))?;
                airlock::enqueue(log.other("second"))
            })
            .unwrap();
    });
    let logged = events.named("flushing intent");
    assert_eq!(logged.len(), 2, "{logged:#?}");
    assert_eq!(logged[0].field("task"), Some("record"));
    assert_eq!(logged[1].field("task"), Some("other"));
    assert!(logged.iter().all(|e| e.level == Level::INFO));
    let rendered = logged[0].field("intent").unwrap();
    assert!(rendered.starts_with("record("), "{rendered}");
    assert!(rendered.contains("\"first\""), "{rendered}");
    assert_eq!(
        log.runs(),
        ["first", "second"],
        "LogOnFlush allows everything"
    );
}

/// `LogOnFlush::level` sets the level of its events; intents that an inner
/// policy drops first are not logged by the outer `LogOnFlush`.
#[test]
fn log_on_flush_uses_its_level_and_sees_only_what_reaches_it() {
    let log = Log::new();
    let ((), events) = capture_events(|| {
        Scope::new()
            .policy(LogOnFlush::new().level(Level::WARN))
            .run(|| -> airlock::Result<()> {
                airlock::with_policy(BlockTasks::names(["other"]), || {
                    airlock::enqueue(log.other("blocked"))
                })?;
                airlock::enqueue(log.record("kept"))
            })
            .unwrap();
    });
    let logged = events.named("flushing intent");
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(logged[0].level, Level::WARN);
    assert_eq!(logged[0].field("task"), Some("record"));
}

/// A dispatch failure logs one ERROR event naming the failed task, its
/// error, and how many intents were and were not dispatched.
#[test]
fn dispatch_failure_logs_an_error() {
    let log = Log::new();
    let (result, events) = capture_events(|| {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.fail("x"))?;
            airlock::enqueue(log.record("b"))?;
            airlock::enqueue(log.record("c"))
        })
    });
    assert!(result.is_err());
    let failed = events.one("flush failed");
    assert_eq!(failed.level, Level::ERROR);
    assert_eq!(failed.field("task"), Some("fail"));
    assert_eq!(failed.field("error"), Some("failed: x"));
    assert_eq!(failed.field("dispatched"), Some("1"));
    assert_eq!(
        failed.field("not_dispatched"),
        Some("3"),
        "the failed intent and the two after it"
    );
}

/// A task that fails under `TokioExecutor` (after the flush returned) goes
/// to the undelivered hook, whose default logs an ERROR naming the task, its
/// error and its payload.
#[test]
fn tokio_executor_logs_failed_tasks() {
    let events = Events::default();
    let subscriber = Registry::default().with(events.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let result = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let result = Scope::new()
                .executor(airlock::TokioExecutor::current())
                .run_async(async { airlock::enqueue(FailAsync) })
                .await;
            // The spawned task runs on this current-thread runtime: let it.
            for _ in 0..10_000 {
                if !events.named(UNDELIVERED).is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            result
        })
    });
    assert!(result.is_ok(), "spawning succeeded: the flush is fine");
    let failed = events.one(UNDELIVERED);
    assert_eq!(failed.level, Level::ERROR);
    assert_eq!(failed.field("task"), Some("fail_async"));
    assert_eq!(failed.field("error"), Some("async task broke"));
    assert_eq!(failed.field("payload"), Some("null"));
    assert!(
        failed
            .field("cause")
            .is_some_and(|cause| cause.contains("failed after TokioExecutor spawned it")),
        "{failed:?}"
    );
}

/// Dropping an `ActiveScope` that still holds intents warns with the count.
#[test]
fn a_dropped_active_scope_warns() {
    let log = Log::new();
    let ((), events) = capture_events(|| {
        let mut scope = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.record("b")).unwrap();
        scope.exit().unwrap();
        drop(scope);
    });
    let warned = events.warnings();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert_eq!(warned[0].field("discarded"), Some("2"));
    assert!(warned[0].message().contains("flush() or discard()"));
    assert_eq!(events.one("scope discarded").field("discarded"), Some("2"));
    assert!(log.runs().is_empty());

    // Nothing to warn about: an empty scope dropped, or one dropped by a
    // panic (that is the panic's to report).
    let ((), events) = capture_events(|| {
        drop(Scope::new().enter().unwrap());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _scope = Scope::new().enter().unwrap();
            airlock::enqueue(log.record("c")).unwrap();
            panic!("the unit of work crashed");
        }));
        assert!(unwound.is_err());
    });
    let warned = events.warnings();
    assert!(warned.is_empty(), "{warned:#?}");
    assert!(log.runs().is_empty());
}

/// Keeps a deferred batch (see `executors.rs`).
#[derive(Clone, Default)]
struct Deferring(Arc<Mutex<Option<Batch>>>);

impl ScopeKind for Deferring {
    fn schedule(&self, batch: Batch) -> Option<Batch> {
        *self.0.lock().unwrap() = Some(batch);
        None
    }
}

/// A deferred batch dropped without `dispatch()` or `discard()` reaches the
/// default undelivered hook, which logs each intent at ERROR with its JSON
/// payload; `discard()` on purpose says how many, at DEBUG.
#[test]
fn deferred_batches_account_for_lost_intents() {
    let log = Log::new();
    let kind = Deferring::default();
    let ((), events) = capture_events(|| {
        Scope::new()
            .kind(kind.clone())
            .run(|| airlock::enqueue(log.record("forgotten")))
            .unwrap();
        drop(kind.0.lock().unwrap().take());
        Scope::new()
            .kind(kind.clone())
            .run(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("rolled-back-1"))?;
                airlock::enqueue(log.record("rolled-back-2"))
            })
            .unwrap();
        let batch = kind.0.lock().unwrap().take().unwrap();
        assert_eq!(batch.discard(), 2);
    });
    let lost: Vec<_> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.level == Level::ERROR && e.target == "airlock")
        .cloned()
        .collect();
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(lost[0].field("task"), Some("record"));
    assert!(lost[0].field("payload").unwrap().contains("forgotten"));
    assert!(
        lost[0]
            .field("cause")
            .unwrap()
            .contains("dropped without dispatch()")
    );
    let discarded = events.one("deferred batch discarded");
    assert_eq!(discarded.field("discarded"), Some("2"));
    assert!(log.runs().is_empty());
}

/// An executor whose dispatch never finishes.
struct Stalls;

impl airlock::Executor for Stalls {
    fn dispatch(&self, intents: airlock::Intents) -> airlock::Dispatch {
        airlock::Dispatch::Pending(Box::pin(async move {
            let _held = intents;
            std::future::pending::<Result<(), airlock::DispatchFailure>>().await
        }))
    }
}

/// An async scope cancelled while its executor dispatches says so with a
/// warning; what the executor still held reaches the undelivered hook,
/// whose default logs it at ERROR.
#[test]
fn a_scope_cancelled_mid_dispatch_warns() {
    let log = Log::new();
    let (out, events) = capture_events(|| {
        airlock_tests::poll_once(
            airlock::Scope::new()
                .executor(Stalls)
                .run_async(async { airlock::enqueue(log.record("held")) }),
        )
    });
    assert!(out.is_none(), "the dispatch never finishes");
    let warning = events.one(
        "an async scope was cancelled while its executor was dispatching: some intents may \
         have escaped; the executor hands the rest to the undelivered hook",
    );
    assert_eq!(warning.level, Level::WARN);
    let lost = events.one("undelivered intent: replay it from this payload");
    assert_eq!(lost.field("task"), Some("record"));
    assert!(log.runs().is_empty());
}

/// An empty scope says how it ended too: flushed when its body succeeded,
/// discarded when it failed, with nothing in either.
#[test]
fn empty_scopes_emit_their_end() {
    let (_, events) = capture_events(|| airlock::scope(|| Ok::<_, Error>(())));
    let flushed = events.one("scope flushed");
    assert_eq!(flushed.field("allowed"), Some("0"));
    assert!(events.named("scope discarded").is_empty());

    let (_, events) = capture_events(|| {
        airlock::scope(|| -> airlock::Result<()> {
            Err(Error::TaskFailed {
                task: "simulated",
                source: "simulated failure".into(),
            })
        })
    });
    let discarded = events.one("scope discarded");
    assert_eq!(discarded.field("discarded"), Some("0"));
    assert!(events.named("scope flushed").is_empty());
}

/// A scope that handed out a handle ends like any other: one "scope
/// flushed", and no "scope discarded" for the handle's (empty) inbox.
#[test]
fn a_scope_with_a_handle_emits_no_extra_discard() {
    let log = Log::new();
    let (_, events) = capture_events(|| {
        airlock::scope(|| -> airlock::Result<()> {
            let handle = airlock::handle()?;
            let sent = log.record("sent");
            std::thread::scope(|threads| threads.spawn(|| handle.enqueue(sent)).join().unwrap())?;
            Ok(())
        })
    });
    assert_eq!(log.runs(), ["sent"]);
    let flushed = events.one("scope flushed");
    assert_eq!(flushed.field("allowed"), Some("1"));
    assert!(events.named("scope discarded").is_empty());
}

/// A scope leaked on a thread ends with the thread's airlock state; what
/// its handles had sent is discarded there, and says so ("scope discarded"
/// with the count). The subscriber is installed before airlock's state is
/// first used on the thread, so it outlives it (thread-local destructors run
/// in the reverse order of first use).
#[test]
fn a_leaked_scope_reports_what_its_handles_sent_when_its_thread_ends() {
    thread_local! {
        static SUBSCRIBER: std::cell::RefCell<Option<tracing::subscriber::DefaultGuard>> =
            const { std::cell::RefCell::new(None) };
    }
    let log = Log::new();
    let events = Events::default();
    let subscriber = Registry::default().with(events.clone());
    let sent = log.record("sent");
    std::thread::spawn(move || {
        SUBSCRIBER.with(|s| *s.borrow_mut() = Some(tracing::subscriber::set_default(subscriber)));
        let scope = Scope::new().enter().unwrap();
        let handle = airlock::handle().unwrap();
        std::thread::scope(|threads| threads.spawn(|| handle.enqueue(sent)).join().unwrap())
            .unwrap();
        std::mem::forget(scope);
    })
    .join()
    .unwrap();
    let discarded = events.one("scope discarded");
    assert_eq!(discarded.field("discarded"), Some("1"));
    assert!(log.runs().is_empty());
}
