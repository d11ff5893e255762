//! Policies: rule 4 (hooks cannot enqueue), rule 5 (rejection at enqueue),
//! rule 6 (flush order and the report), rule 14 (the built-in policies), and
//! combining policies.

use std::sync::Arc;

use airlock::{
    AllowAll, AssertNoEffects, BlockTasks, DispatchOptions, DropAll, Error, Fate, FlushReport,
    Intent, LogOnFlush, Policy, ReportEntry, Scope, StateErrorKind, Violation,
};
use airlock_tests::{Calls, Log, Noop, Other, Record, Tag, seen};

fn calls() -> Calls {
    Arc::default()
}

/// Runs `f` in an entered scope with `policy`, then flushes it and returns
/// the report.
fn flush_with<P: Policy>(policy: P, f: impl FnOnce()) -> FlushReport {
    let mut scope = Scope::new().policy(policy).enter().unwrap();
    f();
    scope.exit().unwrap();
    scope.flush().unwrap()
}

// ---------------------------------------------------------------------------
// Rule 4: policies cannot enqueue.
// ---------------------------------------------------------------------------

/// Tries to enqueue from both hooks and records what `enqueue` returned.
struct Reentrant {
    calls: Calls,
}

impl Policy for Reentrant {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        let outcome = match airlock::enqueue(Noop {}) {
            Err(Error::EnqueueInHook { task, .. }) => format!("on_enqueue: EnqueueInHook({task})"),
            other => format!("on_enqueue: {other:?}"),
        };
        self.calls.lock().unwrap().push(outcome);
        Ok(())
    }

    fn allows(&self, _: &Intent) -> bool {
        let outcome = match airlock::enqueue(Noop {}) {
            Err(Error::EnqueueInHook { task, .. }) => format!("allows: EnqueueInHook({task})"),
            other => format!("allows: {other:?}"),
        };
        self.calls.lock().unwrap().push(outcome);
        true
    }
}

/// Rule 4: `enqueue` from `on_enqueue` and from `allows` returns
/// `EnqueueInHook`; nothing is added, and the original intent is unaffected.
#[test]
fn enqueue_inside_policy_hooks_is_enqueue_in_hook() {
    let log = Log::new();
    let calls = calls();
    let report = flush_with(
        Reentrant {
            calls: calls.clone(),
        },
        || airlock::enqueue(log.record("a")).unwrap(),
    );
    assert_eq!(
        seen(&calls),
        [
            "on_enqueue: EnqueueInHook(noop)",
            "allows: EnqueueInHook(noop)"
        ]
    );
    assert_eq!(report.dispatched().collect::<Vec<_>>(), ["record"]);
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 4: the same holds for a local policy region's hooks.
#[test]
fn enqueue_inside_a_region_policy_hook_is_enqueue_in_hook() {
    let log = Log::new();
    let calls = calls();
    let report = flush_with(AllowAll, || {
        airlock::with_policy(
            Reentrant {
                calls: calls.clone(),
            },
            || airlock::enqueue(log.record("a")).unwrap(),
        )
    });
    assert_eq!(
        seen(&calls),
        [
            "on_enqueue: EnqueueInHook(noop)",
            "allows: EnqueueInHook(noop)"
        ]
    );
    assert_eq!(report.entries().len(), 1);
}

/// Tries to open a scope from inside a hook.
struct EntersScope {
    calls: Calls,
}

impl Policy for EntersScope {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        let outcome = match Scope::new().enter() {
            Err(Error::State(state)) => format!("{:?}", state.kind()),
            Ok(_) => "entered".to_owned(),
            Err(other) => format!("{other:?}"),
        };
        self.calls.lock().unwrap().push(outcome);
        Ok(())
    }
}

/// Rule 4: a hook cannot open a scope either: `enter` is a state error.
#[test]
fn entering_a_scope_inside_a_hook_is_a_state_error() {
    let calls = calls();
    let log = Log::new();
    airlock::scope(|| {
        airlock::with_policy(
            EntersScope {
                calls: calls.clone(),
            },
            || airlock::enqueue(log.record("a")),
        )
    })
    .unwrap();
    assert_eq!(seen(&calls), [format!("{:?}", StateErrorKind::InHook)]);
    assert_eq!(log.runs(), ["a"]);
}

/// Runs a scope from inside a hook, plain or with a policy of its own, and
/// records the panic message.
struct RunsScope {
    calls: Calls,
}

impl Policy for RunsScope {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        let plain = || airlock::scope(|| airlock::Result::Ok(()));
        let configured = || {
            Scope::new()
                .policy(AllowAll)
                .run(|| airlock::Result::Ok(()))
        };
        for run in [&plain as &dyn Fn() -> airlock::Result<()>, &configured] {
            let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(result) => format!("ran: {result:?}"),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map_or("a panic without a message", |message| message)
                    .to_owned(),
            };
            self.calls.lock().unwrap().push(outcome);
        }
        Ok(())
    }
}

/// Rule 4: a hook cannot run a closure scope: it has no error to return, so
/// it panics (a bug in the hook), whatever the scope's settings; the scope
/// that ran the hook goes on.
#[test]
fn running_a_scope_inside_a_hook_panics() {
    let calls = calls();
    let log = Log::new();
    airlock::scope(|| {
        airlock::with_policy(
            RunsScope {
                calls: calls.clone(),
            },
            || airlock::enqueue(log.record("a")),
        )
    })
    .unwrap();
    let message = "airlock: a scope was opened inside a policy or scope hook; \
                   hooks judge intents and cannot run units of work";
    assert_eq!(seen(&calls), [message, message]);
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 4: after a hook ran, enqueue works normally again.
#[test]
fn enqueue_works_again_after_a_hook() {
    let log = Log::new();
    let calls = calls();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::with_policy(
            Reentrant {
                calls: calls.clone(),
            },
            || airlock::enqueue(log.record("a")),
        )?;
        airlock::enqueue(log.record("b"))
    })
    .unwrap();
    assert_eq!(log.runs(), ["a", "b"]);
}

// ---------------------------------------------------------------------------
// Rule 5: rejection at enqueue.
// ---------------------------------------------------------------------------

/// Refuses intents for a closed queue.
struct QueueClosed(&'static str);

impl Policy for QueueClosed {
    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        if intent.options().queue.as_deref() == Some(self.0) {
            return Err(Violation::new(format!("queue `{}` is closed", self.0)));
        }
        Ok(())
    }
}

/// Rule 5: a rejection is a `PolicyViolation` naming the task and the
/// policy, and the intent is not buffered.
#[test]
fn rejection_at_enqueue_names_task_and_policy_and_does_not_buffer() {
    let log = Log::new();
    let mut scope = Scope::new().policy(QueueClosed("slow")).enter().unwrap();
    let error = airlock::enqueue(
        Intent::new(log.record("rejected")).with_options(DispatchOptions::new().queue("slow")),
    )
    .unwrap_err();
    match &error {
        Error::PolicyViolation {
            task,
            policy,
            violation,
            ..
        } => {
            assert_eq!(*task, "record");
            assert_eq!(*policy, "QueueClosed");
            assert_eq!(violation.reason(), "queue `slow` is closed");
        }
        other => panic!("expected a policy violation, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "policy `QueueClosed` rejected `record`: queue `slow` is closed"
    );
    assert!(scope.is_empty(), "a rejected intent is not buffered");
    airlock::enqueue(log.record("accepted")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert_eq!(report.entries().len(), 1);
    assert_eq!(log.runs(), ["accepted"]);
}

/// Rule 5: an ignored rejection does not fail the scope; the others still
/// flush.
#[test]
fn ignored_rejection_does_not_fail_the_scope() {
    let log = Log::new();
    Scope::new()
        .policy(BlockTasks::of::<Other>().reject_at_enqueue())
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            assert!(airlock::enqueue(log.other("b")).is_err());
            airlock::enqueue(log.record("c"))
        })
        .unwrap();
    assert_eq!(log.runs(), ["a", "c"]);
}

// ---------------------------------------------------------------------------
// Rule 6: flush order, FIFO, the report.
// ---------------------------------------------------------------------------

/// Rule 6: at flush, local policies are asked innermost first, then the
/// scope's policy; at enqueue the order is the same.
#[test]
fn flush_checks_local_policies_innermost_first_then_scope_policy() {
    let log = Log::new();
    let calls = calls();
    flush_with(Tag::naming_tasks("scope", &calls), || {
        airlock::with_policy(Tag::naming_tasks("outer", &calls), || {
            airlock::with_policy(Tag::naming_tasks("inner", &calls), || {
                airlock::enqueue(log.record("a")).unwrap();
            })
        })
    });
    assert_eq!(
        seen(&calls),
        [
            "enqueue:inner:record",
            "enqueue:outer:record",
            "enqueue:scope:record",
            "allows:inner:record",
            "allows:outer:record",
            "allows:scope:record",
        ]
    );
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 6: intents are judged and dispatched in enqueue order.
#[test]
fn dispatch_is_fifo_and_policies_are_asked_in_order() {
    let log = Log::new();
    let calls = calls();
    let report = flush_with(Tag::naming_tasks("p", &calls), || {
        airlock::enqueue(log.record("1")).unwrap();
        airlock::enqueue(log.other("2")).unwrap();
        airlock::enqueue(log.record("3")).unwrap();
        airlock::enqueue(log.other("4")).unwrap();
    });
    assert_eq!(log.runs(), ["1", "2", "3", "4"]);
    assert_eq!(
        report.dispatched().collect::<Vec<_>>(),
        ["record", "other", "record", "other"]
    );
    let allows: Vec<_> = seen(&calls)
        .into_iter()
        .filter(|c| c.starts_with("allows"))
        .collect();
    assert_eq!(
        allows,
        [
            "allows:p:record",
            "allows:p:other",
            "allows:p:record",
            "allows:p:other"
        ]
    );
}

/// Rule 6: a policy that drops some intents does not reorder the others; the
/// report lists every intent in order with its fate.
#[test]
fn report_lists_every_intent_in_order_with_its_fate() {
    let log = Log::new();
    let report = flush_with(BlockTasks::of::<Other>(), || {
        airlock::enqueue(log.record("1")).unwrap();
        airlock::enqueue(log.other("2")).unwrap();
        airlock::enqueue(log.record("3")).unwrap();
    });
    assert_eq!(
        report.entries().collect::<Vec<_>>(),
        [
            ReportEntry {
                task: "record",
                fate: Fate::Dispatched
            },
            ReportEntry {
                task: "other",
                fate: Fate::Dropped {
                    policy: "BlockTasks"
                }
            },
            ReportEntry {
                task: "record",
                fate: Fate::Dispatched
            },
        ]
    );
    assert_eq!(report.dispatched_count(), 2);
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert_eq!(report.captured(), 0);
    assert_eq!(report.deferred().count(), 0);
    assert_eq!(log.runs(), ["1", "3"]);
}

/// Rule 6: the first policy that drops an intent is the one reported, and
/// policies after it are not asked.
#[test]
fn report_names_the_first_dropping_policy() {
    let log = Log::new();
    let calls = calls();
    let report = flush_with(Tag::naming_tasks("scope", &calls), || {
        airlock::with_policy(Tag::naming_tasks("outer", &calls), || {
            airlock::with_policy(DropAll, || airlock::enqueue(log.record("a")).unwrap())
        })
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    assert!(
        !seen(&calls).iter().any(|c| c.starts_with("allows")),
        "{:?}",
        seen(&calls)
    );
    assert!(log.runs().is_empty());
}

/// Rule 6: an empty scope flushes to an empty report.
#[test]
fn empty_flush_reports_nothing() {
    let report = flush_with(AllowAll, || {});
    assert_eq!(report.entries().len(), 0);
    assert_eq!(report.dispatched_count(), 0);
    assert_eq!(report.dropped().count(), 0);
    assert_eq!(report.captured(), 0);
}

// ---------------------------------------------------------------------------
// Rule 14: built-in policies.
// ---------------------------------------------------------------------------

/// Rule 14: `AllowAll` lets everything through; it is the default.
#[test]
fn allow_all_dispatches_everything() {
    let log = Log::new();
    let report = flush_with(AllowAll, || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
    });
    assert_eq!(report.dispatched_count(), 2);
    assert_eq!(log.runs(), ["a", "b"]);
    assert_eq!(AllowAll.name(), "AllowAll");
}

/// Rule 14: `DropAll` buffers everything and dispatches nothing; the report
/// names it.
#[test]
fn drop_all_buffers_and_dispatches_nothing() {
    let log = Log::new();
    let mut scope = Scope::new().policy(DropAll).enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("b")).unwrap();
    assert_eq!(scope.len(), 2, "DropAll still buffers (dry run)");
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll"), ("other", "DropAll")]
    );
    assert_eq!(report.dispatched_count(), 0);
    assert!(log.runs().is_empty());
}

/// Rule 14: `AssertNoEffects` makes any enqueue a violation naming the task.
#[test]
fn assert_no_effects_rejects_any_enqueue_naming_the_task() {
    let log = Log::new();
    let mut scope = Scope::new().policy(AssertNoEffects).enter().unwrap();
    let error = airlock::enqueue(log.other("x")).unwrap_err();
    assert!(
        matches!(
            error,
            Error::PolicyViolation {
                task: "other",
                policy: "AssertNoEffects",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`other(log: "), "{message}");
    assert!(message.contains(r#"label: "x")`"#), "{message}");
    assert!(scope.is_empty());
    scope.exit().unwrap();
    assert_eq!(scope.flush().unwrap().entries().len(), 0);
    assert!(log.runs().is_empty());
}

/// Rule 14: `AssertNoEffects` passes a body with no enqueue.
#[test]
fn assert_no_effects_passes_a_pure_body() {
    let value = Scope::new()
        .policy(AssertNoEffects)
        .run(|| -> airlock::Result<u32> { Ok(2 + 2) })
        .unwrap();
    assert_eq!(value, 4);
}

/// Rule 14: `BlockTasks::names` blocks by stable name at flush.
#[test]
fn block_tasks_by_name() {
    let log = Log::new();
    let policy = BlockTasks::names(["other"]);
    assert!(policy.blocks("other"));
    assert!(!policy.blocks("record"));
    let report = flush_with(policy, || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 14: `BlockTasks::names` accepts owned names (from configuration) and
/// `and_name` adds more.
#[test]
fn block_tasks_by_owned_names_and_and_name() {
    let from_config: Vec<String> = vec!["record".to_owned()];
    let policy = BlockTasks::names(from_config).and_name("noop");
    assert!(policy.blocks("record"));
    assert!(policy.blocks("noop"));
    assert!(!policy.blocks("other"));
    assert!(!policy.blocks("recor"), "whole names only");
}

/// Rule 14: `BlockTasks::of::<T>().and::<U>()` blocks by type.
#[test]
fn block_tasks_by_type() {
    let log = Log::new();
    let policy = BlockTasks::of::<Record>().and::<Other>();
    assert!(policy.blocks("record") && policy.blocks("other"));
    assert!(!policy.blocks("noop"));
    let report = flush_with(policy, || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(Noop {}).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
    });
    assert_eq!(report.dispatched().collect::<Vec<_>>(), ["noop"]);
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "BlockTasks"), ("other", "BlockTasks")]
    );
    assert!(log.runs().is_empty());
}

/// Rule 14: without `reject_at_enqueue`, a blocked task stays buffered until
/// flush.
#[test]
fn block_tasks_keeps_blocked_intents_buffered_until_flush() {
    let log = Log::new();
    let mut scope = Scope::new()
        .policy(BlockTasks::of::<Other>())
        .enter()
        .unwrap();
    airlock::enqueue(log.other("b")).unwrap();
    assert_eq!(scope.len(), 1);
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert!(log.runs().is_empty());
}

/// Rule 14: `reject_at_enqueue` turns a blocked enqueue into a violation
/// naming the task; other tasks pass.
#[test]
fn block_tasks_reject_at_enqueue() {
    let log = Log::new();
    let mut scope = Scope::new()
        .policy(BlockTasks::names(["other"]).reject_at_enqueue())
        .enter()
        .unwrap();
    let error = airlock::enqueue(log.other("b")).unwrap_err();
    assert!(matches!(
        error,
        Error::PolicyViolation {
            task: "other",
            policy: "BlockTasks",
            ..
        }
    ));
    let message = error.to_string();
    assert!(message.contains("`other` is blocked here"), "{message}");
    airlock::enqueue(log.record("a")).unwrap();
    assert_eq!(scope.len(), 1);
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 14: `reject_at_enqueue` by type.
#[test]
fn block_tasks_by_type_reject_at_enqueue() {
    let log = Log::new();
    let result = Scope::new()
        .policy(BlockTasks::of::<Record>().reject_at_enqueue())
        .run(|| airlock::enqueue(log.record("a")));
    assert!(matches!(
        result,
        Err(Error::PolicyViolation { task: "record", .. })
    ));
    assert!(log.runs().is_empty());
}

/// Rule 14: `LogOnFlush` allows everything, at any level.
#[test]
fn log_on_flush_allows_all() {
    let log = Log::new();
    let report = flush_with(LogOnFlush::new(), || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
    });
    assert_eq!(report.dispatched_count(), 2);
    let report = flush_with(LogOnFlush::new().level(tracing::Level::TRACE), || {
        airlock::enqueue(log.record("c")).unwrap();
    });
    assert_eq!(report.dispatched_count(), 1);
    assert_eq!(log.runs(), ["a", "b", "c"]);
    assert_eq!(LogOnFlush::default().name(), "LogOnFlush");
}

/// Rule 14: built-in policy names are their short type names.
#[test]
fn built_in_policy_names() {
    assert_eq!(DropAll.name(), "DropAll");
    assert_eq!(AssertNoEffects.name(), "AssertNoEffects");
    assert_eq!(BlockTasks::names(["x"]).name(), "BlockTasks");
}

// ---------------------------------------------------------------------------
// Combining policies.
// ---------------------------------------------------------------------------

/// Combining: a tuple requires every member to allow, and the report names
/// the member that dropped.
#[test]
fn tuple_policy_reports_the_member_that_dropped() {
    let log = Log::new();
    let report = flush_with((LogOnFlush::new(), BlockTasks::of::<Other>()), || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks")]
    );
    assert_eq!(log.runs(), ["a"]);

    let report = flush_with((AllowAll, LogOnFlush::new(), DropAll), || {
        airlock::enqueue(log.record("c")).unwrap();
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    assert_eq!(log.runs(), ["a"]);
}

/// Combining: a tuple's members are asked in order at enqueue and at flush.
#[test]
fn tuple_policy_asks_members_in_order() {
    let log = Log::new();
    let calls = calls();
    flush_with(
        (
            Tag::naming_tasks("first", &calls),
            Tag::naming_tasks("second", &calls),
        ),
        || {
            airlock::enqueue(log.record("a")).unwrap();
        },
    );
    assert_eq!(
        seen(&calls),
        [
            "enqueue:first:record",
            "enqueue:second:record",
            "allows:first:record",
            "allows:second:record"
        ]
    );
}

/// Combining: a tuple member's rejection at enqueue is a violation naming
/// that member, not the tuple.
#[test]
fn tuple_policy_rejection_names_the_member() {
    let log = Log::new();
    let error = Scope::new()
        .policy((AssertNoEffects, LogOnFlush::new()))
        .run(|| airlock::enqueue(log.record("a")))
        .unwrap_err();
    match error {
        Error::PolicyViolation { task, policy, .. } => {
            assert_eq!(task, "record");
            assert_eq!(policy, "AssertNoEffects");
        }
        other => panic!("expected a policy violation, got {other:?}"),
    }
    assert!(log.runs().is_empty());
}

/// Combining: `Vec<Box<dyn Policy>>` requires every member to allow and the
/// report names the member that dropped.
#[test]
fn boxed_policy_vec_reports_the_member_that_dropped() {
    let log = Log::new();
    let policies: Vec<Box<dyn Policy>> = vec![
        Box::new(LogOnFlush::new()),
        Box::new(BlockTasks::names(["other"])),
        Box::new(DropAll),
    ];
    let report = flush_with(policies, || {
        airlock::enqueue(log.other("b")).unwrap();
        airlock::enqueue(log.record("a")).unwrap();
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("other", "BlockTasks"), ("record", "DropAll")]
    );
    assert!(log.runs().is_empty());
}

/// Combining: an empty `Vec` of policies allows everything.
#[test]
fn empty_policy_vec_allows_everything() {
    let log = Log::new();
    let policies: Vec<Box<dyn Policy>> = Vec::new();
    let report = flush_with(policies, || airlock::enqueue(log.record("a")).unwrap());
    assert_eq!(report.dispatched_count(), 1);
    assert_eq!(log.runs(), ["a"]);
}

/// Combining: a `Vec` member's rejection at enqueue is a violation naming
/// that member.
#[test]
fn boxed_policy_vec_rejection_names_the_member() {
    let log = Log::new();
    let policies: Vec<Box<dyn Policy>> =
        vec![Box::new(LogOnFlush::new()), Box::new(AssertNoEffects)];
    let error = Scope::new()
        .policy(policies)
        .run(|| airlock::enqueue(log.record("a")))
        .unwrap_err();
    match error {
        Error::PolicyViolation { task, policy, .. } => {
            assert_eq!(task, "record");
            assert_eq!(policy, "AssertNoEffects");
        }
        other => panic!("expected a policy violation, got {other:?}"),
    }
}

/// Combining: a boxed policy and an `Arc`ed policy keep their member's name.
#[test]
fn boxed_and_arced_policies_keep_their_name() {
    let log = Log::new();
    let boxed: Box<dyn Policy> = Box::new(DropAll);
    assert_eq!(boxed.name(), "DropAll");
    let report = flush_with(boxed, || airlock::enqueue(log.record("a")).unwrap());
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    let arced: Arc<dyn Policy> = Arc::new(BlockTasks::of::<Record>());
    let report = flush_with(arced, || airlock::enqueue(log.record("b")).unwrap());
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "BlockTasks")]
    );
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// Custom policies.
// ---------------------------------------------------------------------------

/// Allows only intents bound for one queue.
struct OnlyQueue(&'static str);

impl Policy for OnlyQueue {
    fn allows(&self, intent: &Intent) -> bool {
        intent.options().queue.as_deref() == Some(self.0)
    }
}

/// Custom policy: `allows` reads the intent; its default name is the type's
/// short name and appears in the report.
#[test]
fn custom_policy_filters_and_is_named_in_the_report() {
    let log = Log::new();
    let report = flush_with(OnlyQueue("fast"), || {
        airlock::enqueue(
            Intent::new(log.record("fast")).with_options(DispatchOptions::new().queue("fast")),
        )
        .unwrap();
        airlock::enqueue(log.record("default-queue")).unwrap();
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "OnlyQueue")]
    );
    assert_eq!(log.runs(), ["fast"]);
}

/// Custom policy: a policy with no hooks overridden allows everything.
#[test]
fn custom_policy_defaults_allow_everything() {
    struct Nothing;
    impl Policy for Nothing {}
    let log = Log::new();
    let report = flush_with(Nothing, || airlock::enqueue(log.record("a")).unwrap());
    assert_eq!(report.dispatched_count(), 1);
    assert_eq!(Nothing.name(), "Nothing");
    assert_eq!(log.runs(), ["a"]);
}

/// Custom policy: a policy sees every intent with its payload at both hooks.
#[test]
fn custom_policy_sees_payloads() {
    struct LabelsSeen(Calls);
    impl Policy for LabelsSeen {
        fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
            if let Some(record) = intent.payload::<Record>() {
                self.0.lock().unwrap().push(format!("+{}", record.label));
            }
            Ok(())
        }
        fn allows(&self, intent: &Intent) -> bool {
            let label = intent.payload::<Record>().map(|r| r.label.clone());
            self.0
                .lock()
                .unwrap()
                .push(format!("?{}", label.as_deref().unwrap_or("-")));
            label.as_deref() != Some("secret")
        }
    }
    let log = Log::new();
    let calls = calls();
    flush_with(LabelsSeen(calls.clone()), || {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.record("secret")).unwrap();
        airlock::enqueue(Noop {}).unwrap();
    });
    assert_eq!(seen(&calls), ["+a", "+secret", "?a", "?secret", "?-"]);
    assert_eq!(log.runs(), ["a"]);
}

/// A `Vec` of policies is a policy of its own: its `allows`, `on_enqueue`
/// and `name` combine its members'.
#[test]
fn a_vec_of_policies_answers_through_its_own_hooks() {
    let log = Log::new();
    let intent = Intent::new(log.record("a"));
    let blocks: Vec<Box<dyn Policy>> =
        vec![Box::new(AllowAll), Box::new(BlockTasks::of::<Record>())];
    assert_eq!(blocks.name(), "policy list");
    assert!(!blocks.allows(&intent));
    assert!(blocks.on_enqueue(&intent).is_ok());
    let allows: Vec<Box<dyn Policy>> = vec![Box::new(AllowAll), Box::new(AllowAll)];
    assert!(allows.allows(&intent));
    let rejects: Vec<Box<dyn Policy>> = vec![Box::new(AllowAll), Box::new(AssertNoEffects)];
    assert!(rejects.on_enqueue(&intent).is_err());
    assert!(!rejects.allows(&intent), "one member refusing is enough");
}

/// A report keeps consecutive intents of one task with one fate as one run,
/// and still lists every intent, in order, with the right counts.
#[test]
fn report_runs_list_every_intent_in_order() {
    let log = Log::new();
    let report = flush_with(BlockTasks::of::<Other>(), || {
        for n in 0..3 {
            airlock::enqueue(log.record(n.to_string())).unwrap();
        }
        airlock::enqueue(log.other("x")).unwrap();
        airlock::enqueue(log.other("y")).unwrap();
        airlock::enqueue(log.record("z")).unwrap();
    });
    let fates: Vec<_> = report.entries().map(|e| (e.task, e.fate)).collect();
    let dropped = Fate::Dropped {
        policy: "BlockTasks",
    };
    assert_eq!(
        fates,
        [
            ("record", Fate::Dispatched),
            ("record", Fate::Dispatched),
            ("record", Fate::Dispatched),
            ("other", dropped),
            ("other", dropped),
            ("record", Fate::Dispatched),
        ]
    );
    assert_eq!(report.entries().len(), 6);
    assert_eq!(report.entries().size_hint(), (6, Some(6)));
    // It counts down as it goes, across runs.
    let mut entries = report.entries();
    for left in (0..6).rev() {
        assert!(entries.next().is_some());
        assert_eq!(entries.len(), left);
    }
    assert_eq!(entries.next(), None);
    assert_eq!(report.dispatched().count(), 4);
    assert_eq!(report.dropped().count(), 2);
}

/// Reports compare by what they list: the same entries and counts are equal,
/// a different fate or count is not.
#[test]
fn reports_compare_by_their_entries() {
    let log = Log::new();
    let flush_two = |policy: BlockTasks| {
        flush_with(policy, || {
            airlock::enqueue(log.record("a")).unwrap();
            airlock::enqueue(log.other("b")).unwrap();
        })
    };
    let blocked = flush_two(BlockTasks::of::<Other>());
    assert_eq!(blocked, flush_two(BlockTasks::of::<Other>()));
    assert_ne!(blocked, flush_two(BlockTasks::of::<Record>()));
    let one = flush_with(BlockTasks::of::<Other>(), || {
        airlock::enqueue(log.record("c")).unwrap();
    });
    assert_ne!(blocked, one);
}
