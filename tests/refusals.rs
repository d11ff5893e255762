//! Refused enqueues (issue 6): an enqueue that is refused hands its intent
//! back in the error, as `std::sync::mpsc::SendError` does; refusing never
//! panics or aborts, from a payload's `Drop` or a thread-local destructor;
//! a scope's handles close however the scope ends; replacing the global
//! defaults never deadlocks on a policy's `Drop`.
//!
//! Tests that would abort the process, or that change the process-wide
//! defaults, run in a child process (`run_in_child`).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::{
    BlockTasks, Error, Exit, Intent, Policy, Run, Scope, ScopeHandle, ScopeKind, StateErrorKind,
    Task, Violation,
};
use airlock_tests::{Calls, Log, Noop, Record, is_child, labels, run_in_child, seen};
use serde::{Deserialize, Serialize};

/// The state error's kind, or a panic naming what the error was.
fn state_kind(error: &Error) -> StateErrorKind {
    match error {
        Error::State(state) => state.kind(),
        other => panic!("expected a state error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Item 8: refused intents are handed back
// ---------------------------------------------------------------------------

/// Issue 6, item 8: `enqueue` with no scope is `NoScope`, and the error
/// hands the intent back (before: it was dropped).
#[test]
fn no_scope_hands_the_intent_back() {
    let log = Log::new();
    let error = airlock::enqueue(log.record("orphan")).unwrap_err();
    assert!(
        matches!(error, Error::NoScope { task: "record", .. }),
        "{error:?}"
    );
    assert_eq!(labels(&error.into_undispatched()), ["orphan"]);
    assert!(log.runs().is_empty());
}

/// Issue 6, item 8: an enqueue through a handle whose scope has ended is an
/// `Ended` state error that hands the intent back, both through
/// `ScopeHandle::enqueue` and a plain `enqueue` inside `ScopeHandle::run`
/// (before: the intent was dropped).
#[test]
fn an_ended_handle_hands_the_intent_back() {
    let log = Log::new();
    let handle = airlock::scope(airlock::handle).unwrap();
    assert!(!handle.is_open());

    let direct = handle.enqueue(log.record("direct")).unwrap_err();
    assert_eq!(state_kind(&direct), StateErrorKind::Ended);
    let Error::State(state) = &direct else {
        unreachable!()
    };
    assert_eq!(state.intent().map(Intent::name), Some("record"));
    assert_eq!(labels(&direct.into_undispatched()), ["direct"]);

    let inside = handle
        .run(|| airlock::enqueue(log.record("inside")))
        .unwrap_err();
    assert_eq!(state_kind(&inside), StateErrorKind::Ended);
    assert_eq!(labels(&inside.into_undispatched()), ["inside"]);
    assert!(log.runs().is_empty());
}

/// A policy whose `on_enqueue` tries to enqueue (through `enqueue` and
/// through a handle), keeping what the refusals hand back.
struct EnqueuesInHook {
    log: Log,
    handle: Mutex<Option<ScopeHandle>>,
    back: Arc<Mutex<Vec<Intent>>>,
    kinds: Calls,
}

impl Policy for EnqueuesInHook {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        let plain = airlock::enqueue(self.log.record("plain-in-hook"));
        let through_handle = match &*self.handle.lock().unwrap() {
            Some(handle) => handle.enqueue(self.log.record("handle-in-hook")),
            None => Ok(()),
        };
        for result in [plain, through_handle] {
            if let Err(error) = result {
                let kind = match &error {
                    Error::EnqueueInHook { .. } => "EnqueueInHook".to_owned(),
                    other => format!("{other:?}"),
                };
                self.kinds.lock().unwrap().push(kind);
                self.back.lock().unwrap().extend(error.into_undispatched());
            }
        }
        Ok(())
    }
}

/// Issue 6, item 8: an enqueue from inside a policy hook is
/// `EnqueueInHook`, through `enqueue` and through a handle, and the error
/// hands the intent back (before: it was dropped).
#[test]
fn enqueue_in_hook_hands_the_intent_back() {
    let log = Log::new();
    let back = Arc::new(Mutex::new(Vec::new()));
    let kinds = Calls::default();
    let policy = Arc::new(EnqueuesInHook {
        log: log.clone(),
        handle: Mutex::new(None),
        back: back.clone(),
        kinds: kinds.clone(),
    });
    Scope::new()
        .policy(ArcPolicy(policy.clone()))
        .run(|| {
            *policy.handle.lock().unwrap() = Some(airlock::handle()?);
            airlock::enqueue(log.record("outer"))
        })
        .unwrap();
    assert_eq!(seen(&kinds), ["EnqueueInHook", "EnqueueInHook"]);
    assert_eq!(
        labels(&back.lock().unwrap()),
        ["plain-in-hook", "handle-in-hook"]
    );
    assert_eq!(
        log.runs(),
        ["outer"],
        "the hook's intents were not buffered"
    );
}

/// Shares a policy with the test that inspects it.
struct ArcPolicy<P>(Arc<P>);

impl<P: Policy> Policy for ArcPolicy<P> {
    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        self.0.on_enqueue(intent)
    }
}

/// Issue 6, item 8: an intent a policy rejects at enqueue comes back in the
/// `PolicyViolation` error (before: it was dropped).
#[test]
fn a_policy_violation_hands_the_intent_back() {
    let log = Log::new();
    let back = Scope::new()
        .policy(BlockTasks::of::<Record>().reject_at_enqueue())
        .run(|| -> airlock::Result<Vec<Intent>> {
            let error = airlock::enqueue(log.record("rejected")).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::PolicyViolation {
                        task: "record",
                        policy: "BlockTasks",
                        ..
                    }
                ),
                "{error:?}"
            );
            Ok(error.into_undispatched())
        })
        .unwrap();
    assert_eq!(labels(&back), ["rejected"]);
    assert_eq!(
        back[0].payload::<Record>().map(|r| r.log.clone()),
        Some(log.record("").log)
    );
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// Item 9: a handle used from a thread-local destructor
// ---------------------------------------------------------------------------

/// Enqueues through a handle when the thread-local holding it is destroyed,
/// and records whether airlock's own thread state was already destroyed then
/// (its [`Marker`] reported it) and what the enqueue returned.
struct LateEnqueue {
    handle: ScopeHandle,
    intent: Record,
    report: Calls,
}

impl Drop for LateEnqueue {
    fn drop(&mut self) {
        let gone = seen(&self.report).contains(&MARKER_DROPPED.to_owned());
        let result = self.handle.enqueue(self.intent.clone());
        self.report
            .lock()
            .unwrap()
            .push(format!("state gone: {gone}, result: {result:?}"));
        // No scope can be current on a thread whose state is gone: a plain
        // enqueue says so and hands the intent back.
        let plain = airlock::enqueue(self.intent.clone());
        let handed_back = match plain {
            Err(error @ airlock::Error::NoScope { .. }) => error.into_undispatched().len(),
            other => panic!("expected NoScope, got {other:?}"),
        };
        self.report
            .lock()
            .unwrap()
            .push(format!("plain enqueue: NoScope, {handed_back} handed back"));
    }
}

const MARKER_DROPPED: &str = "airlock's thread state was destroyed";

/// A payload left in a scope that is never ended on its thread, so it is
/// dropped with airlock's thread state, and says so. Name: `marker`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Marker {
    #[serde(skip)]
    report: Calls,
}

impl Task for Marker {
    const NAME: &'static str = "marker";

    fn run(self) -> Run {
        Run::ok()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.report.lock().unwrap().push(MARKER_DROPPED.to_owned());
    }
}

thread_local! {
    static LATE: RefCell<Option<LateEnqueue>> = const { RefCell::new(None) };
}

/// Issue 6, item 9: a `ScopeHandle` used from a thread-local destructor,
/// after airlock's own thread state is destroyed, returns normally and the
/// intent reaches the scope (before: "cannot access a Thread Local Storage
/// value during or after destruction" aborted the process). Run in a child
/// process, since the failure is an abort.
#[test]
fn a_handle_used_from_a_thread_local_destructor_reaches_its_scope() {
    run_in_child(
        "child_handle_from_thread_local_destructor",
        Duration::from_secs(30),
    );
}

#[test]
#[ignore = "child process of a_handle_used_from_a_thread_local_destructor_reaches_its_scope"]
fn child_handle_from_thread_local_destructor() {
    if !is_child("child_handle_from_thread_local_destructor") {
        return;
    }
    let log = Log::new();
    let report = Calls::default();
    let result = airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        let late = LateEnqueue {
            handle,
            intent: log.record("late"),
            report: report.clone(),
        };
        let marker_report = report.clone();
        std::thread::spawn(move || {
            // Thread-local destructors run in the reverse order of first
            // use: `LATE` first, airlock's state second, so `LATE` is
            // destroyed after airlock's state. The leaked scope's `Marker`
            // is dropped with airlock's state, and shows that it was.
            LATE.with(|_| ());
            let leaked = Scope::new().enter().unwrap();
            airlock::enqueue(Marker {
                report: marker_report,
            })
            .unwrap();
            std::mem::forget(leaked);
            LATE.with(|slot| *slot.borrow_mut() = Some(late));
        })
        .join()
        .expect("the thread exits cleanly");
        assert_eq!(
            seen(&report),
            [
                MARKER_DROPPED,
                "state gone: true, result: Ok(())",
                "plain enqueue: NoScope, 1 handed back"
            ],
            "the destructor ran after airlock's state was destroyed, and the enqueue succeeded"
        );
        Ok(())
    });
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(log.runs(), ["late"], "the intent reached the scope");
}

// ---------------------------------------------------------------------------
// Item 13: a refused payload whose `Drop` enqueues
// ---------------------------------------------------------------------------

/// A payload whose `Drop` calls `airlock::enqueue` and records the outcome.
/// Name: `enqueues_on_drop`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EnqueuesOnDrop {
    label: String,
    #[serde(skip)]
    outcomes: Calls,
}

impl Task for EnqueuesOnDrop {
    const NAME: &'static str = "enqueues_on_drop";

    fn run(self) -> Run {
        Run::ok()
    }
}

impl Drop for EnqueuesOnDrop {
    fn drop(&mut self) {
        let outcome = match catch_unwind(|| airlock::enqueue(Noop {})) {
            Ok(Ok(())) => "enqueued".to_owned(),
            Ok(Err(Error::State(state))) => format!("{:?}", state.kind()),
            Ok(Err(other)) => format!("{other:?}"),
            Err(_) => "panicked".to_owned(),
        };
        self.outcomes.lock().unwrap().push(outcome);
    }
}

/// Issue 6, item 13: a payload refused by an ended handle, whose `Drop`
/// calls `airlock::enqueue` while the handle's scope is current, does not
/// panic: the refusal hands it back, and its `Drop` gets an error of its own
/// (before: "already borrowed", the intent dropped while airlock held its
/// stack).
#[test]
fn a_refused_payload_whose_drop_enqueues_does_not_panic() {
    let outcomes = Calls::default();
    let payload = |label: &str| EnqueuesOnDrop {
        label: label.to_owned(),
        outcomes: outcomes.clone(),
    };
    let handle = airlock::scope(airlock::handle).unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| {
        handle.run(|| {
            let error = airlock::enqueue(payload("inside run")).unwrap_err();
            assert_eq!(state_kind(&error), StateErrorKind::Ended);
            let back = error.into_undispatched();
            assert_eq!(back.len(), 1);
            assert_eq!(
                back[0]
                    .payload::<EnqueuesOnDrop>()
                    .map(|p| p.label.as_str()),
                Some("inside run")
            );
            // Dropped with the handle's (ended) scope current.
        });
        let error = handle.enqueue(payload("through enqueue")).unwrap_err();
        assert_eq!(state_kind(&error), StateErrorKind::Ended);
    }));
    assert!(result.is_ok(), "refusing the payload panicked");
    let outcomes = seen(&outcomes);
    assert!(!outcomes.is_empty(), "the payloads were dropped");
    assert_eq!(
        outcomes[0], "Ended",
        "the first drop ran inside the handle's scope: {outcomes:?}"
    );
    assert!(
        !outcomes.iter().any(|outcome| outcome == "panicked"),
        "{outcomes:?}"
    );
}

// ---------------------------------------------------------------------------
// Item 1: a panic in `should_flush` closes the handles
// ---------------------------------------------------------------------------

/// A kind whose `should_flush` panics.
struct PanicsInShouldFlush;

impl ScopeKind for PanicsInShouldFlush {
    fn should_flush(&self, _: Exit) -> bool {
        panic!("should_flush has a bug")
    }
}

/// Issue 6, item 1: a panic inside a custom `should_flush` ends the scope
/// for its handles: a later enqueue through one is an `Ended` error handing
/// the intent back (before: `Ok`, and the intent was never seen again).
/// Checked for a closure scope and an `ActiveScope`.
#[test]
fn a_panic_in_should_flush_closes_the_handles() {
    let log = Log::new();

    let mut taken = None;
    let closure = catch_unwind(AssertUnwindSafe(|| {
        Scope::new()
            .kind(PanicsInShouldFlush)
            .run(|| -> airlock::Result<()> {
                let handle = airlock::handle()?;
                assert!(handle.is_open(), "open while its scope runs");
                taken = Some(handle);
                Ok(())
            })
    }));
    assert!(closure.is_err(), "the kind's panic reaches the caller");

    let mut scope = Scope::new().kind(PanicsInShouldFlush).enter().unwrap();
    let active = airlock::handle().unwrap();
    scope.exit().unwrap();
    assert!(active.is_open(), "open until its scope ends");
    assert!(catch_unwind(AssertUnwindSafe(|| scope.flush())).is_err());

    for (name, handle) in [("closure", taken.expect("a handle")), ("active", active)] {
        assert!(!handle.is_open(), "{name}: the handle is still open");
        let error = handle.enqueue(log.record(name)).unwrap_err();
        assert_eq!(state_kind(&error), StateErrorKind::Ended, "{name}");
        assert_eq!(labels(&error.into_undispatched()), [name]);
    }
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// Item 11: replacing the defaults drops the old ones outside the lock
// ---------------------------------------------------------------------------

/// A policy whose `Drop` reads the defaults in force, and records what it
/// saw.
struct ReadsDefaultsOnDrop {
    seen: Calls,
}

impl Policy for ReadsDefaultsOnDrop {
    fn name(&self) -> &'static str {
        "ReadsDefaultsOnDrop"
    }
}

impl Drop for ReadsDefaultsOnDrop {
    fn drop(&mut self) {
        let policy = airlock::defaults().policy_name();
        self.seen.lock().unwrap().push(policy.to_owned());
    }
}

/// Issue 6, item 11: a default policy whose `Drop` reads
/// `airlock::defaults()` is dropped by `configure` and by `reset_defaults`
/// without deadlocking (before: it was dropped while the global lock was
/// held, and the read blocked forever). In a child process, with a time
/// limit: it changes the process-wide defaults.
#[test]
fn replacing_the_defaults_does_not_deadlock_on_a_policy_drop() {
    run_in_child(
        "child_replacing_the_defaults_drops_outside_the_lock",
        Duration::from_secs(30),
    );
}

#[test]
#[ignore = "child process of replacing_the_defaults_does_not_deadlock_on_a_policy_drop"]
fn child_replacing_the_defaults_drops_outside_the_lock() {
    if !is_child("child_replacing_the_defaults_drops_outside_the_lock") {
        return;
    }
    let seen_by = Calls::default();
    let policy = || ReadsDefaultsOnDrop {
        seen: seen_by.clone(),
    };
    airlock::configure(airlock::Defaults::new().policy(policy()));
    airlock::configure(airlock::Defaults::new().policy(BlockTasks::of::<Noop>()));
    assert_eq!(seen(&seen_by), ["BlockTasks"], "dropped by configure");
    airlock::configure(airlock::Defaults::new().policy(policy()));
    airlock::reset_defaults();
    assert_eq!(
        seen(&seen_by),
        ["BlockTasks", "AllowAll"],
        "dropped by reset_defaults"
    );
}

/// Issue 6, item 11, the same drop from a thread's cached copy of the
/// defaults: a thread that used the defaults keeps a copy, which it replaces
/// when they change. A policy whose `Drop` reads the defaults must not
/// panic or deadlock there either. In a child process, with a time limit.
#[test]
fn replacing_cached_defaults_does_not_panic_on_a_policy_drop() {
    run_in_child("child_replacing_cached_defaults", Duration::from_secs(30));
}

#[test]
#[ignore = "child process of replacing_cached_defaults_does_not_panic_on_a_policy_drop"]
fn child_replacing_cached_defaults() {
    if !is_child("child_replacing_cached_defaults") {
        return;
    }
    let log = Log::new();
    let seen_by = Calls::default();
    airlock::configure(airlock::Defaults::new().policy(ReadsDefaultsOnDrop {
        seen: seen_by.clone(),
    }));
    // This thread reads, and caches, the configured defaults.
    airlock::scope(|| airlock::enqueue(log.record("configured"))).unwrap();
    airlock::reset_defaults();
    assert!(
        seen(&seen_by).is_empty(),
        "this thread's copy keeps it alive"
    );
    // The next scope sees the change and drops its copy.
    let next = catch_unwind(|| airlock::scope(|| airlock::enqueue(log.record("reset"))));
    assert!(
        matches!(next, Ok(Ok(()))),
        "the scope after reset_defaults failed: {next:?}"
    );
    assert_eq!(seen(&seen_by), ["AllowAll"]);
    assert_eq!(log.runs(), ["configured", "reset"]);
}

/// Issue 6, item 11, the same drop when a thread that cached the defaults
/// exits: its copy is dropped with airlock's thread state, and a policy
/// whose `Drop` reads the defaults must not abort the process there. In a
/// child process, with a time limit.
#[test]
fn a_thread_exit_dropping_cached_defaults_does_not_abort() {
    run_in_child(
        "child_thread_exit_drops_cached_defaults",
        Duration::from_secs(30),
    );
}

#[test]
#[ignore = "child process of a_thread_exit_dropping_cached_defaults_does_not_abort"]
fn child_thread_exit_drops_cached_defaults() {
    if !is_child("child_thread_exit_drops_cached_defaults") {
        return;
    }
    let log = Log::new();
    let seen_by = Calls::default();
    airlock::configure(airlock::Defaults::new().policy(ReadsDefaultsOnDrop {
        seen: seen_by.clone(),
    }));
    let (cached, cached_rx) = std::sync::mpsc::channel();
    let (exit, exit_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn({
        let log = log.clone();
        move || {
            airlock::scope(|| airlock::enqueue(log.record("on the thread"))).unwrap();
            cached.send(()).unwrap();
            exit_rx.recv().unwrap();
        }
    });
    cached_rx.recv().unwrap();
    airlock::reset_defaults();
    assert!(
        seen(&seen_by).is_empty(),
        "the thread's copy keeps it alive"
    );
    exit.send(()).unwrap();
    worker.join().expect("the thread exits cleanly");
    assert_eq!(seen(&seen_by).len(), 1, "dropped once, with the thread");
    assert_eq!(log.runs(), ["on the thread"]);
}

/// A scope leaked on a thread (an `ActiveScope` forgotten while current)
/// ends with the thread: its handles are closed, and an enqueue through one
/// afterwards is an `Ended` error that hands the intent back rather than an
/// `Ok` into a scope that can never flush.
#[test]
fn a_scope_leaked_on_an_ended_thread_closes_its_handles() {
    let log = Log::new();
    let handle = std::thread::spawn(|| {
        let scope = Scope::new().enter().unwrap();
        let handle = airlock::handle().unwrap();
        std::mem::forget(scope);
        handle
    })
    .join()
    .unwrap();
    assert!(!handle.is_open());
    let error = handle.enqueue(log.record("late")).unwrap_err();
    assert_eq!(state_kind(&error), StateErrorKind::Ended);
    assert_eq!(labels(&error.into_undispatched()), ["late"]);
}
