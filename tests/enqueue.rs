//! Enqueueing: rule 1 (no scope, no effect), rule 2 (nothing escapes before
//! flush), and what an `Intent` lets you inspect.

use std::panic::{AssertUnwindSafe, catch_unwind};

use airlock::{DispatchOptions, Error, Intent, Run, Task};
use airlock_tests::{Log, Noop, Other, Record, RecordAsync};
use serde::{Deserialize, Serialize};

/// A task with default dispatch options, to check how they merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Mail {
    to: String,
}

impl Task for Mail {
    const NAME: &'static str = "mail";

    fn default_options() -> DispatchOptions {
        DispatchOptions::new()
            .queue("mail")
            .max_attempts(3)
            .extra("tenant", "acme")
            .extra("lang", "en")
    }

    fn run(self) -> Run {
        Run::ok()
    }
}

/// A tuple struct task: displayed with positional arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pair(u32, String);

impl Task for Pair {
    const NAME: &'static str = "pair";

    fn run(self) -> Run {
        Run::ok()
    }
}

/// A unit struct task: displayed as a call with no arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Ping;

impl Task for Ping {
    const NAME: &'static str = "ping";

    fn run(self) -> Run {
        Run::ok()
    }
}

/// A newtype task: displayed with its single value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Id(u64);

impl Task for Id {
    const NAME: &'static str = "id";

    fn run(self) -> Run {
        Run::ok()
    }
}

// ---------------------------------------------------------------------------
// Rule 1: no scope, no effect.
// ---------------------------------------------------------------------------

/// Rule 1: enqueue with no scope returns `NoScope` naming the task and never
/// runs it.
#[test]
fn enqueue_without_scope_is_no_scope_error_naming_the_task() {
    let log = Log::new();
    let error = airlock::enqueue(log.record("a")).unwrap_err();
    assert!(
        matches!(error, Error::NoScope { task: "record", .. }),
        "{error:?}"
    );
    assert_eq!(error.task(), Some("record"));
    assert!(log.runs().is_empty(), "the task must never run");
}

/// Rule 1: the error never panics, even when called repeatedly.
#[test]
fn enqueue_without_scope_does_not_panic() {
    let log = Log::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        (0..3)
            .map(|i| airlock::enqueue(log.record(format!("{i}"))).is_err())
            .collect::<Vec<_>>()
    }));
    assert_eq!(outcome.expect("enqueue panicked"), [true, true, true]);
    assert!(log.runs().is_empty());
}

/// Rule 1: the message names the task and says how to open a scope.
#[test]
fn no_scope_message_names_the_task_and_the_fix() {
    let message = airlock::enqueue(Noop {}).unwrap_err().to_string();
    assert!(message.contains("`noop`"), "{message}");
    assert!(message.contains("no airlock scope is active"), "{message}");
    assert!(message.contains("airlock::scope("), "{message}");
    assert!(message.contains("airlock::handle()"), "{message}");
}

/// Rule 1: once a scope has ended, there is no scope again.
#[test]
fn enqueue_after_scope_ended_is_no_scope() {
    let log = Log::new();
    airlock::scope(|| airlock::enqueue(log.record("inside"))).unwrap();
    let error = airlock::enqueue(log.record("after")).unwrap_err();
    assert!(matches!(error, Error::NoScope { task: "record", .. }));
    assert_eq!(log.runs(), ["inside"]);
}

/// Rule 1: a fresh thread has no scope, even if the spawning thread has one.
#[test]
fn enqueue_on_a_fresh_thread_is_no_scope() {
    let log = Log::new();
    let result = airlock::scope(|| -> airlock::Result<()> {
        let task = log.record("thread");
        let on_thread = std::thread::spawn(move || airlock::enqueue(task))
            .join()
            .unwrap();
        assert!(matches!(
            on_thread,
            Err(Error::NoScope { task: "record", .. })
        ));
        Ok(())
    });
    result.unwrap();
    assert!(log.runs().is_empty());
}

/// Rule 1 and 7: the NoScope error hands the refused intent back, as
/// `mpsc::SendError` does.
#[test]
fn no_scope_error_hands_back_the_intent() {
    let error = airlock::enqueue(Noop {}).unwrap_err();
    let back = error.into_undispatched();
    assert_eq!(back.len(), 1);
    assert!(back[0].is::<Noop>());
}

/// Rule 1 while a thread ends: an enqueue from a thread-local's destructor
/// that runs after airlock's own state is gone has no scope either. It is
/// the `NoScope` error, handing the intent back whole: not a panic (which
/// aborts the process in a destructor), not a lost intent.
#[test]
fn an_enqueue_while_the_thread_ends_hands_the_intent_back() {
    type Seen = std::sync::Arc<std::sync::Mutex<Option<String>>>;
    struct EnqueuesOnDrop(Seen);
    impl Drop for EnqueuesOnDrop {
        fn drop(&mut self) {
            let outcome = match airlock::enqueue(Pair(7, "late".into())) {
                Err(error @ Error::NoScope { task: "pair", .. }) => {
                    let back = error.into_undispatched();
                    format!("NoScope, handed back {:?}", back[0].payload::<Pair>())
                }
                other => format!("{other:?}"),
            };
            *self.0.lock().unwrap() = Some(outcome);
        }
    }
    thread_local! {
        static ENDS_LAST: std::cell::RefCell<Option<EnqueuesOnDrop>> =
            const { std::cell::RefCell::new(None) };
    }
    let seen = Seen::default();
    let on_thread = seen.clone();
    std::thread::spawn(move || {
        // Thread-locals are destroyed in the reverse order of their first
        // use: this one is used before airlock's state, so it ends after it.
        ENDS_LAST.with(|slot| *slot.borrow_mut() = Some(EnqueuesOnDrop(on_thread)));
        airlock::scope(|| airlock::enqueue(Noop {})).unwrap();
    })
    .join()
    .expect("the thread ended cleanly");
    assert_eq!(
        seen.lock().unwrap().as_deref(),
        Some(r#"NoScope, handed back Some(Pair(7, "late"))"#)
    );
}

// ---------------------------------------------------------------------------
// Rule 2: effects escape only at flush.
// ---------------------------------------------------------------------------

/// Rule 2: nothing runs while the scope is open, everything runs after.
#[test]
fn nothing_runs_before_the_scope_flushes() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        assert!(log.runs().is_empty(), "ran before flush");
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(log.other("c"))?;
        assert!(log.runs().is_empty(), "ran before flush");
        assert_eq!(airlock::buffered().len(), 3);
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["a", "b", "c"]);
}

/// Rule 2: an explicit `ActiveScope` also holds everything until flush, even
/// after exit.
#[test]
fn entered_scope_holds_intents_until_flush() {
    let log = Log::new();
    let mut scope = airlock::Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    scope.exit().unwrap();
    assert!(log.runs().is_empty(), "ran at exit, before flush");
    assert_eq!(scope.len(), 1);
    scope.flush().unwrap();
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 2: `buffered()` is a copy; the buffered intents are not consumed by
/// looking at them.
#[test]
fn looking_at_buffered_intents_does_not_dispatch_or_consume_them() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        let seen = airlock::buffered();
        assert_eq!(seen.len(), 1);
        drop(seen);
        assert_eq!(airlock::buffered().len(), 1);
        assert!(log.runs().is_empty());
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["a"]);
}

/// `buffered()` is empty (not an error) outside any scope.
#[test]
fn buffered_is_empty_without_scope() {
    assert!(airlock::buffered().is_empty());
}

// ---------------------------------------------------------------------------
// Intent inspection.
// ---------------------------------------------------------------------------

/// Intent: name is the task's stable name.
#[test]
fn intent_name_is_the_task_name() {
    let log = Log::new();
    assert_eq!(Intent::new(log.record("a")).name(), "record");
    assert_eq!(Intent::new(log.other("a")).name(), "other");
    assert_eq!(Intent::new(Noop {}).name(), "noop");
    assert_eq!(Intent::from(Ping).name(), "ping");
}

/// Intent: payload downcasts to its own type and to no other.
#[test]
fn intent_payload_downcasts_to_its_own_type_only() {
    let log = Log::new();
    let task = log.record("a");
    let intent = Intent::new(task.clone());
    assert_eq!(intent.payload::<Record>(), Some(&task));
    assert_eq!(intent.payload::<Other>(), None);
    assert_eq!(intent.payload::<Noop>(), None);
    assert!(intent.is::<Record>());
    assert!(!intent.is::<Other>());
}

/// Intent: the payload is found through `capture` as the enqueued value.
#[test]
fn captured_intent_payload_is_the_enqueued_value() {
    let log = Log::new();
    let (result, intents) = airlock::capture(|| airlock::enqueue(log.record("a")));
    result.unwrap();
    assert_eq!(intents.len(), 1);
    assert_eq!(
        intents[0].payload::<Record>().map(|r| r.label.as_str()),
        Some("a")
    );
    assert!(log.runs().is_empty(), "capture must not dispatch");
}

/// Intent: to_json is the payload serialized.
#[test]
fn intent_to_json_is_the_serialized_payload() {
    let log = Log::new();
    let task = log.record("a");
    let json = Intent::new(task.clone()).to_json().unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "log": task.log, "label": "a" }),
        "{json}"
    );
    assert_eq!(
        Intent::new(Pair(1, "x".into())).to_json().unwrap(),
        serde_json::json!([1, "x"])
    );
    assert_eq!(
        Intent::new(Noop {}).to_json().unwrap(),
        serde_json::json!({})
    );
}

/// Intent: Display reads like the call, fields in declaration order.
#[test]
fn intent_display_reads_like_a_call() {
    let log = Log::new();
    let task = log.record("a");
    let expected = format!(r#"record(log: "{}", label: "a")"#, task.log);
    assert_eq!(Intent::new(task).to_string(), expected);
    assert_eq!(Intent::new(Noop {}).to_string(), "noop()");
}

/// Intent: Display for tuple, unit and newtype payloads.
#[test]
fn intent_display_for_tuple_unit_and_newtype_payloads() {
    assert_eq!(
        Intent::new(Pair(1, "x".into())).to_string(),
        r#"pair(1, "x")"#
    );
    assert_eq!(Intent::new(Ping).to_string(), "ping()");
    assert_eq!(Intent::new(Id(7)).to_string(), "id(7)");
}

/// Intent: Display escapes strings as JSON does.
#[test]
fn intent_display_escapes_strings() {
    let intent = Intent::new(Mail {
        to: "a\"b@c".into(),
    });
    assert_eq!(intent.to_string(), r#"mail(to: "a\"b@c")"#);
}

/// Intent: Debug shows the name and the payload's fields.
#[test]
fn intent_debug_shows_name_and_payload() {
    let log = Log::new();
    let intent = Intent::new(log.record("label-for-debug")).with_origin("checkout");
    let debug = format!("{intent:?}");
    assert!(debug.starts_with("Intent"), "{debug}");
    assert!(debug.contains("\"record\""), "{debug}");
    assert!(debug.contains("label-for-debug"), "{debug}");
    assert!(debug.contains("checkout"), "{debug}");
}

/// Intent: options start as the task's defaults.
#[test]
fn intent_options_default_to_the_task_defaults() {
    let intent = Intent::new(Mail { to: "a@b.c".into() });
    let options = intent.options();
    assert_eq!(options.queue.as_deref(), Some("mail"));
    assert_eq!(options.max_attempts, Some(3));
    assert_eq!(options.priority, None);
    assert_eq!(options.delay, None);
    assert_eq!(options.extras["tenant"], "acme");
    assert_eq!(*options, Mail::default_options());
}

/// Intent: a task without defaults has empty options.
#[test]
fn intent_options_of_a_task_without_defaults_are_empty() {
    let log = Log::new();
    assert_eq!(
        *Intent::new(log.record("a")).options(),
        DispatchOptions::default()
    );
}

/// Intent: with_options overrides what it sets and keeps the task defaults
/// for the rest, extras merged key by key.
#[test]
fn intent_with_options_overrides_and_merges_with_task_defaults() {
    let intent = Intent::new(Mail { to: "a@b.c".into() }).with_options(
        DispatchOptions::new()
            .queue("fast")
            .priority(5)
            .delay(std::time::Duration::from_secs(60))
            .extra("tenant", "globex")
            .extra("region", "eu"),
    );
    let options = intent.options();
    assert_eq!(options.queue.as_deref(), Some("fast"), "override wins");
    assert_eq!(options.priority, Some(5));
    assert_eq!(options.delay, Some(std::time::Duration::from_secs(60)));
    assert_eq!(options.max_attempts, Some(3), "unset falls back to default");
    assert_eq!(options.extras["tenant"], "globex", "override wins per key");
    assert_eq!(options.extras["region"], "eu");
    assert_eq!(options.extras["lang"], "en", "default extra kept");
    assert_eq!(options.extras.len(), 3);
}

/// Intent: with_options on a task without defaults is exactly what was given.
#[test]
fn intent_with_options_without_task_defaults_is_what_was_given() {
    let log = Log::new();
    let given = DispatchOptions::new().queue("q").max_attempts(1);
    let intent = Intent::new(log.record("a")).with_options(given.clone());
    assert_eq!(*intent.options(), given);
}

/// Intent: origin is absent unless recorded.
#[test]
fn intent_origin() {
    let log = Log::new();
    assert_eq!(Intent::new(log.record("a")).origin(), None);
    let intent = Intent::new(log.record("a")).with_origin("request-17");
    assert_eq!(intent.origin(), Some("request-17"));
    assert_eq!(
        Intent::new(Noop {})
            .with_origin(String::from("cli"))
            .origin(),
        Some("cli")
    );
}

/// Intent: a clone keeps payload, options and origin.
#[test]
fn intent_clone_keeps_everything() {
    let intent = Intent::new(Mail { to: "x".into() })
        .with_options(DispatchOptions::new().queue("q"))
        .with_origin("o");
    let copy = intent.clone();
    assert_eq!(copy.payload::<Mail>(), intent.payload::<Mail>());
    assert_eq!(copy.options(), intent.options());
    assert_eq!(copy.origin(), Some("o"));
    assert_eq!(copy.to_string(), intent.to_string());
}

/// Intent: is_async follows the task, and a fresh intent is not captured.
#[test]
fn intent_is_async_and_not_captured_when_fresh() {
    let log = Log::new();
    assert!(!Intent::new(log.record("a")).is_async());
    assert!(Intent::new(log.record_async("a")).is_async());
    assert!(
        Intent::new(RecordAsync {
            log: "x".into(),
            label: "y".into()
        })
        .is::<RecordAsync>()
    );
    assert!(!Intent::new(log.record("a")).is_captured());
}

/// Enqueue accepts an `Intent` built with options and origin; they survive
/// buffering.
#[test]
fn enqueue_an_intent_built_with_options_keeps_them() {
    let (result, intents) = airlock::capture(|| {
        airlock::enqueue(
            Intent::new(Mail { to: "a@b.c".into() })
                .with_options(DispatchOptions::new().queue("urgent"))
                .with_origin("checkout"),
        )
    });
    result.unwrap();
    let intent = &intents[0];
    assert_eq!(intent.name(), "mail");
    assert_eq!(intent.options().queue.as_deref(), Some("urgent"));
    assert_eq!(intent.options().max_attempts, Some(3));
    assert_eq!(intent.origin(), Some("checkout"));
    assert!(!intent.is_captured());
}

/// Enqueue of an `Intent` dispatches the payload as the task would be.
#[test]
fn enqueue_an_intent_runs_the_task_at_flush() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(
            Intent::new(log.record("with-options"))
                .with_options(DispatchOptions::new().queue("fast")),
        )?;
        assert!(log.runs().is_empty());
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["with-options"]);
}

/// Rule 1 for an `Intent`: no scope is an error naming the task.
#[test]
fn enqueue_an_intent_without_scope_is_no_scope() {
    let error =
        airlock::enqueue(Intent::new(Mail { to: "x".into() }).with_origin("o")).unwrap_err();
    assert!(matches!(error, Error::NoScope { task: "mail", .. }));
}

// ---------------------------------------------------------------------------
// Error messages read well.
// ---------------------------------------------------------------------------

/// Error messages: a policy violation names the policy, the task and the
/// reason.
#[test]
fn policy_violation_message_names_policy_task_and_reason() {
    let log = Log::new();
    let error = airlock::Scope::new()
        .policy(airlock::AssertNoEffects)
        .run(|| airlock::enqueue(log.record("a")))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("policy `AssertNoEffects` rejected `record`: "),
        "{message}"
    );
    assert!(
        message.contains("no side effects are allowed here"),
        "{message}"
    );
    assert!(message.contains(r#"label: "a""#), "{message}");
    assert_eq!(error.task(), Some("record"));
    // The reason is part of the message, so it is not a source as well:
    // `{:#}` would print it twice.
    assert!(std::error::Error::source(&error).is_none());
}

/// Error messages: enqueue from a hook says why and what to do instead.
#[test]
fn enqueue_in_hook_message_says_what_to_do() {
    let message = Error::EnqueueInHook {
        task: "noop",
        intent: Box::new(airlock::Intent::new(airlock_tests::Noop {})),
    }
    .to_string();
    assert!(message.contains("cannot enqueue `noop`"), "{message}");
    assert!(message.contains("policy or scope hook"), "{message}");
    assert!(message.contains("Enqueue it from the code"), "{message}");
}

/// Error messages: state errors say what to call instead.
#[test]
fn state_error_messages_say_what_to_do() {
    let mut scope = airlock::Scope::new().enter().unwrap();
    let still_current = scope.flush().unwrap_err().to_string();
    assert!(still_current.contains("still current"), "{still_current}");
    assert!(still_current.contains("exit()"), "{still_current}");
    scope.exit().unwrap();
    scope.flush().unwrap();
    let twice = scope.flush().unwrap_err().to_string();
    assert!(twice.contains("already flushed"), "{twice}");
}

/// Error messages: a failed flush says which task failed and how to get the
/// rest back.
#[test]
fn dispatch_error_message_names_the_task_and_the_way_back() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("ok"))?;
        airlock::enqueue(log.fail("boom"))?;
        airlock::enqueue(log.record("never"))
    })
    .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("dispatching `fail` failed"), "{message}");
    assert!(
        message.contains("after 1 intent(s) were dispatched"),
        "{message}"
    );
    assert!(message.contains("into_undispatched"), "{message}");
    // The task's own error is the source, not repeated in the message.
    assert!(!message.contains("boom"), "{message}");
    let source = std::error::Error::source(&error).expect("the task's error is the source");
    assert!(source.to_string().contains("boom"), "{source}");
    assert_eq!(
        format!("{:#}", anyhow::Error::from(error))
            .matches("boom")
            .count(),
        1,
        "a message appears once in the chain"
    );
    assert_eq!(log.runs(), ["ok", "boom"]);
}

/// Runs every intent but the last, which it consumes and fails to send (its
/// queue is full), so it has nothing to hand back.
struct FullQueue;

impl airlock::Executor for FullQueue {
    fn dispatch(&self, intents: airlock::Intents) -> airlock::Dispatch {
        let mut intents = intents.into_vec();
        let last = intents.pop().expect("flushes are never empty");
        let dispatched = intents.len();
        for intent in intents {
            let ran = intent.run().wait();
            assert!(ran.is_ok());
        }
        airlock::Dispatch::Done(Err(airlock::DispatchFailure {
            dispatched,
            failed_task: last.name(),
            failed: None,
            error: "the queue is full".into(),
            not_attempted: Vec::new(),
        }))
    }
}

/// Error messages: a failed flush with nothing to hand back (the executor
/// consumed the failed intent, nothing came after it) does not promise
/// intents to retry, and still keeps the executor's error as its source.
#[test]
fn dispatch_error_message_with_nothing_handed_back() {
    let log = Log::new();
    let error = airlock::Scope::new()
        .executor(FullQueue)
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("sent"))?;
            airlock::enqueue(log.other("lost"))
        })
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "dispatching `other` failed after 1 intent(s) were dispatched"
    );
    let source = std::error::Error::source(&error).expect("the executor's error is the source");
    assert_eq!(source.to_string(), "the queue is full");
    assert_eq!(error.task(), Some("other"));
    assert!(error.into_undispatched().is_empty());
    assert_eq!(log.runs(), ["sent"]);
}

/// `Error::task` names the task of a registry error too.
#[test]
fn error_task_names_the_task_of_a_registry_error() {
    let error = Error::from(airlock::registry::lookup("no.such.task").unwrap_err());
    assert_eq!(error.task(), Some("no.such.task"));
}
