//! Global defaults: rule 13 (the default policy, executor and scope kind;
//! explicit arguments win; read back and reset; per-thread overrides for
//! tests).
//!
//! Exactly one test here (`configure_then_reset_round_trip`) changes the
//! process-wide defaults. Every other test runs under a `with_defaults`
//! override, which takes precedence over the global defaults on its thread,
//! so it is immune to that test running in parallel.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use airlock::{
    AllowAll, Defaults, Dispatch, DropAll, Executor, Exit, Independent, InlineExecutor, Intent,
    LogOnFlush, Run, Scope, ScopeKind, Task, Undelivered,
};
use airlock_tests::Log;
use serde::{Deserialize, Serialize};

/// Records the names of the intents it is handed, and runs nothing.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<&'static str>>>);

impl Recorder {
    fn seen(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

impl Executor for Recorder {
    fn dispatch(&self, intents: airlock::Intents) -> Dispatch {
        self.0
            .lock()
            .unwrap()
            .extend(intents.iter().map(Intent::name));
        Dispatch::Done(Ok(()))
    }
}

/// Flushes even when the body fails (an alerting scope).
struct AlwaysFlush;

impl ScopeKind for AlwaysFlush {
    fn should_flush(&self, exit: Exit) -> bool {
        matches!(exit, Exit::Success | Exit::Failure)
    }
}

/// A plain kind written by hand: the trait's defaults.
struct Plain;

impl ScopeKind for Plain {}

/// A task only the configure test enqueues; the global default it installs
/// blocks it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct GloballyBlocked;

impl Task for GloballyBlocked {
    const NAME: &'static str = "defaults_test.globally_blocked";

    fn run(self) -> Run {
        panic!("the configured global default must block this task")
    }
}

/// Runs `f` under built-in defaults, immune to the global configuration.
fn builtin<R>(f: impl FnOnce() -> R) -> R {
    airlock::with_defaults(Defaults::new(), f)
}

// ---------------------------------------------------------------------------
// Default policy.
// ---------------------------------------------------------------------------

/// Rule 13: a default policy applies to scopes opened inside `with_defaults`.
#[test]
fn default_policy_applies_to_scopes_inside() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().policy(DropAll), || {
        airlock::scope(|| airlock::enqueue(log.record("a"))).unwrap();
        Scope::new()
            .run(|| airlock::enqueue(log.record("b")))
            .unwrap();
    });
    assert!(log.runs().is_empty());
}

/// Rule 13: the default policy is named in the flush report.
#[test]
fn default_policy_is_named_in_the_report() {
    let log = Log::new();
    let report = airlock::with_defaults(Defaults::new().policy(DropAll), || {
        let mut scope = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("a")).unwrap();
        scope.exit().unwrap();
        scope.flush().unwrap()
    });
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
}

/// Rule 13: an explicit policy wins over the default, even `AllowAll`.
#[test]
fn explicit_policy_wins_over_default() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().policy(DropAll), || {
        Scope::new()
            .policy(AllowAll)
            .run(|| airlock::enqueue(log.record("explicit-allow")))
            .unwrap();
        Scope::new()
            .policy(LogOnFlush::new())
            .run(|| airlock::enqueue(log.record("explicit-log")))
            .unwrap();
        airlock::scope(|| airlock::enqueue(log.record("default-drop"))).unwrap();
    });
    assert_eq!(log.runs(), ["explicit-allow", "explicit-log"]);
}

/// A clone of a configured scope is configured apart: a setting changed on
/// the clone leaves the original's, and a setting left alone still comes from
/// the defaults.
#[test]
fn a_cloned_scope_is_configured_apart() {
    let log = Log::new();
    let recorder = Recorder::default();
    let template = Scope::new().policy(DropAll);
    let clone = template.clone().policy(AllowAll);
    airlock::with_defaults(Defaults::new().executor(recorder.clone()), || {
        template
            .run(|| airlock::enqueue(log.record("template")))
            .unwrap();
        clone.run(|| airlock::enqueue(log.record("clone"))).unwrap();
    });
    assert_eq!(
        recorder.seen(),
        ["record"],
        "only the clone lets it through"
    );
    assert_eq!(
        format!("{:?}", Scope::new().kind(Independent)),
        r#"Scope { policy: "default", executor: "default", kind: "explicit" }"#
    );
    assert_eq!(
        format!(
            "{:?}",
            Scope::new().policy(DropAll).executor(InlineExecutor)
        ),
        r#"Scope { policy: "explicit", executor: "explicit", kind: "default" }"#
    );
}

/// Rule 13: without an override (and under built-in defaults) everything is
/// allowed.
#[test]
fn builtin_defaults_allow_everything() {
    let log = Log::new();
    builtin(|| {
        let defaults = airlock::defaults();
        assert_eq!(defaults.policy_name(), "AllowAll");
        assert!(defaults.executor_is_inline());
        assert!(defaults.kind_is_plain());
        assert!(defaults.undelivered_is_logged());
        airlock::scope(|| airlock::enqueue(log.record("a"))).unwrap();
    });
    assert_eq!(log.runs(), ["a"]);
}

// ---------------------------------------------------------------------------
// Reading back and restoring.
// ---------------------------------------------------------------------------

/// Rule 13: `defaults()` reads back what is in force.
#[test]
fn defaults_read_back() {
    airlock::with_defaults(
        Defaults::new()
            .policy(DropAll)
            .executor(Recorder::default())
            .kind(AlwaysFlush)
            .on_undelivered(|_| {}),
        || {
            let defaults = airlock::defaults();
            assert_eq!(defaults.policy_name(), "DropAll");
            assert!(!defaults.executor_is_inline());
            assert!(!defaults.kind_is_plain());
            assert!(!defaults.undelivered_is_logged());
        },
    );
}

/// Rule 13: `Defaults` built with the built-in choices reads as built-in.
#[test]
fn defaults_with_builtin_choices_read_as_builtin() {
    let defaults = Defaults::new().policy(AllowAll).executor(InlineExecutor);
    assert_eq!(defaults.policy_name(), "AllowAll");
    assert!(defaults.executor_is_inline());
    assert!(defaults.kind_is_plain());
    let debug = format!("{:?}", Defaults::new().policy(DropAll).kind(Plain));
    assert!(debug.contains("DropAll"), "{debug}");
    assert!(debug.contains("custom"), "{debug}");
}

/// Rule 13: `with_defaults` restores the previous defaults afterwards, and
/// returns the closure's value.
#[test]
fn with_defaults_restores_afterwards() {
    airlock::with_defaults(Defaults::new().policy(LogOnFlush::new()), || {
        let value = airlock::with_defaults(Defaults::new().policy(DropAll), || {
            assert_eq!(airlock::defaults().policy_name(), "DropAll");
            3
        });
        assert_eq!(value, 3);
        assert_eq!(airlock::defaults().policy_name(), "LogOnFlush");
    });
}

/// Rule 13: `with_defaults` restores the previous defaults after a panic.
#[test]
fn with_defaults_restores_after_panic() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().policy(LogOnFlush::new()), || {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            airlock::with_defaults(Defaults::new().policy(DropAll), || {
                panic!("inside with_defaults");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(airlock::defaults().policy_name(), "LogOnFlush");
        airlock::scope(|| airlock::enqueue(log.record("a"))).unwrap();
    });
    assert_eq!(log.runs(), ["a"], "DropAll must not linger after the panic");
}

/// Rule 13: the policy is resolved when a scope opens: changing the defaults
/// inside an open scope does not change that scope.
#[test]
fn scope_keeps_the_defaults_it_opened_with() {
    let log = Log::new();
    builtin(|| {
        airlock::scope(|| {
            airlock::with_defaults(Defaults::new().policy(DropAll), || {
                airlock::enqueue(log.record("outer-scope-allows"))
            })
        })
        .unwrap();
    });
    assert_eq!(log.runs(), ["outer-scope-allows"]);
}

/// Rule 13: a `with_defaults` override is per thread: another thread does not
/// see it.
#[test]
fn with_defaults_does_not_reach_other_threads() {
    airlock::with_defaults(Defaults::new().policy(DropAll), || {
        let elsewhere = std::thread::spawn(|| airlock::defaults().policy_name())
            .join()
            .unwrap();
        // The other thread sees the global defaults (the built-in ones, or
        // whatever the configure test installed), never this override.
        assert_ne!(elsewhere, "DropAll");
    });
}

// ---------------------------------------------------------------------------
// Default executor and kind.
// ---------------------------------------------------------------------------

/// Rule 13: the default executor is used by scopes that do not name one.
#[test]
fn default_executor_is_used() {
    let log = Log::new();
    let recorder = Recorder::default();
    airlock::with_defaults(Defaults::new().executor(recorder.clone()), || {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.other("b"))
        })
        .unwrap();
    });
    assert_eq!(recorder.seen(), ["record", "other"]);
    assert!(log.runs().is_empty(), "the recorder runs nothing");
}

/// Rule 13: an explicit executor wins over the default one.
#[test]
fn explicit_executor_wins_over_default() {
    let log = Log::new();
    let default = Recorder::default();
    let explicit = Recorder::default();
    airlock::with_defaults(Defaults::new().executor(default.clone()), || {
        Scope::new()
            .executor(InlineExecutor)
            .run(|| airlock::enqueue(log.record("inline")))
            .unwrap();
        Scope::new()
            .executor(explicit.clone())
            .run(|| airlock::enqueue(log.other("explicit")))
            .unwrap();
    });
    assert_eq!(log.runs(), ["inline"]);
    assert_eq!(explicit.seen(), ["other"]);
    assert!(default.seen().is_empty());
}

/// Rule 13: the default kind is used: here one that flushes on failure too.
#[test]
fn default_kind_is_used() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().kind(AlwaysFlush), || {
        let result = airlock::scope(|| -> anyhow::Result<()> {
            airlock::enqueue(log.record("alert"))?;
            anyhow::bail!("request failed")
        });
        assert!(result.is_err());
    });
    assert_eq!(log.runs(), ["alert"]);
}

/// Rule 13: an explicit kind wins over the default one.
#[test]
fn explicit_kind_wins_over_default() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().kind(AlwaysFlush), || {
        let result = Scope::new().kind(Plain).run(|| -> anyhow::Result<()> {
            airlock::enqueue(log.record("discarded"))?;
            anyhow::bail!("failed")
        });
        assert!(result.is_err());
    });
    assert!(log.runs().is_empty());
}

/// Rule 13: a default `Independent` kind makes nested scopes dispatch their
/// own intents.
#[test]
fn default_independent_kind_applies_to_nested_scopes() {
    let log = Log::new();
    airlock::with_defaults(Defaults::new().kind(Independent), || {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::scope(|| airlock::enqueue(log.record("inner")))?;
            assert_eq!(log.runs(), ["inner"]);
            Ok(())
        })
        .unwrap();
    });
    assert_eq!(log.runs(), ["inner"]);
}

/// Rule 13: all three defaults combine, and explicit settings replace them
/// one by one.
#[test]
fn defaults_combine_and_are_replaced_one_by_one() {
    let log = Log::new();
    let recorder = Recorder::default();
    airlock::with_defaults(
        Defaults::new()
            .policy(airlock::BlockTasks::of::<airlock_tests::Other>())
            .executor(recorder.clone())
            .kind(AlwaysFlush),
        || {
            let _ = airlock::scope(|| -> anyhow::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.other("b"))?;
                anyhow::bail!("still flushed by AlwaysFlush")
            });
            Scope::new()
                .policy(AllowAll)
                .run(|| airlock::enqueue(log.other("c")))
                .unwrap();
        },
    );
    assert_eq!(recorder.seen(), ["record", "other"]);
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// Async overrides.
// ---------------------------------------------------------------------------

/// Rule 13: `with_defaults_async` applies across `.await`, on a
/// multi-threaded runtime, and is gone once the future completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_defaults_async_applies_across_await() {
    let log = Log::new();
    airlock::with_defaults_async(Defaults::new(), async {
        airlock::with_defaults_async(Defaults::new().policy(DropAll), async {
            tokio::task::yield_now().await;
            assert_eq!(airlock::defaults().policy_name(), "DropAll");
            airlock::scope_async(async {
                airlock::enqueue(log.record("a"))?;
                tokio::task::yield_now().await;
                airlock::enqueue(log.record("b"))
            })
            .await
            .unwrap();
        })
        .await;
        assert_eq!(airlock::defaults().policy_name(), "AllowAll");
        airlock::scope_async(async { airlock::enqueue(log.record("after")) })
            .await
            .unwrap();
    })
    .await;
    assert_eq!(log.runs(), ["after"]);
}

/// Rule 13: `with_defaults_async` does not leak into a task spawned inside
/// it, nor into a concurrent future.
#[tokio::test]
async fn with_defaults_async_does_not_leak() {
    let spawned = airlock::with_defaults_async(Defaults::new().policy(DropAll), async {
        tokio::spawn(async { airlock::defaults().policy_name() })
            .await
            .unwrap()
    })
    .await;
    assert_ne!(spawned, "DropAll");

    let overridden = airlock::with_defaults_async(Defaults::new().policy(DropAll), async {
        tokio::task::yield_now().await;
        airlock::defaults().policy_name()
    });
    let plain = airlock::with_defaults_async(Defaults::new(), async {
        tokio::task::yield_now().await;
        let first = airlock::defaults().policy_name();
        tokio::task::yield_now().await;
        (first, airlock::defaults().policy_name())
    });
    let (a, b) = tokio::join!(overridden, plain);
    assert_eq!(a, "DropAll");
    assert_eq!(b, ("AllowAll", "AllowAll"));
}

/// Rule 13: an async scope opened under `with_defaults_async` uses the default
/// executor.
#[tokio::test]
async fn with_defaults_async_default_executor() {
    let log = Log::new();
    let recorder = Recorder::default();
    airlock::with_defaults_async(
        Defaults::new().executor(recorder.clone()),
        airlock::scope_async(async { airlock::enqueue(log.record("a")) }),
    )
    .await
    .unwrap();
    assert_eq!(recorder.seen(), ["record"]);
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// The one test that changes the global defaults.
// ---------------------------------------------------------------------------

/// Rule 13: `configure` sets the process-wide defaults (seen on every
/// thread without an override), an override still wins, and
/// `reset_defaults` restores the built-in ones.
#[test]
fn configure_then_reset_round_trip() {
    // Blocks only a task no other test enqueues, so tests running in
    // parallel (all under overrides anyway) cannot be affected.
    static LOST: Mutex<Vec<String>> = Mutex::new(Vec::new());
    airlock::configure(
        Defaults::new()
            .policy(airlock::BlockTasks::of::<GloballyBlocked>())
            .on_undelivered(|lost: Undelivered| LOST.lock().unwrap().push(lost.cause().into())),
    );

    assert_eq!(airlock::defaults().policy_name(), "BlockTasks");
    // Intents lost on a thread that has not read the defaults yet reach the
    // configured hook, not the built-in log.
    std::thread::spawn(|| {
        let lost = vec![Intent::new(GloballyBlocked)];
        airlock::undelivered(Undelivered::new(lost, "lost on a fresh thread"));
    })
    .join()
    .unwrap();
    let lost = LOST.lock().unwrap().clone();
    assert!(
        lost.iter().any(|c| c == "lost on a fresh thread"),
        "{lost:?}"
    );
    // Every plain scope sees the configured defaults, not only the first
    // one a thread opens after the change (the thread caches them).
    std::thread::spawn(|| {
        for _ in 0..3 {
            airlock::scope(|| airlock::enqueue(GloballyBlocked))
                .expect("blocked by the configured policy, so never run");
        }
    })
    .join()
    .unwrap();
    let other_thread = std::thread::spawn(|| {
        let name = airlock::defaults().policy_name();
        let report = {
            let mut scope = Scope::new().enter().unwrap();
            airlock::enqueue(GloballyBlocked).unwrap();
            scope.exit().unwrap();
            scope.flush().unwrap()
        };
        (name, report.dropped().collect::<Vec<_>>())
    })
    .join()
    .unwrap();
    assert_eq!(
        other_thread,
        (
            "BlockTasks",
            vec![("defaults_test.globally_blocked", "BlockTasks")]
        )
    );
    // An override wins over the configured defaults.
    builtin(|| assert_eq!(airlock::defaults().policy_name(), "AllowAll"));
    assert_eq!(airlock::defaults().policy_name(), "BlockTasks");

    // Reconfiguring replaces the whole set. This thread cached the first
    // set above; what it loses now reaches the new hook, not the cached one.
    static LOST_AFTER: Mutex<Vec<String>> = Mutex::new(Vec::new());
    airlock::configure(
        Defaults::new()
            .policy(LogOnFlush::new())
            .kind(Plain)
            .on_undelivered(|lost: Undelivered| {
                LOST_AFTER.lock().unwrap().push(lost.cause().into())
            }),
    );
    let lost = vec![Intent::new(GloballyBlocked)];
    airlock::undelivered(Undelivered::new(lost, "lost after reconfiguring"));
    assert_eq!(
        *LOST_AFTER.lock().unwrap(),
        ["lost after reconfiguring"],
        "the hook of the defaults in force"
    );
    assert!(
        !LOST
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "lost after reconfiguring")
    );
    let defaults = airlock::defaults();
    assert_eq!(defaults.policy_name(), "LogOnFlush");
    assert!(!defaults.kind_is_plain());

    airlock::reset_defaults();
    let defaults = airlock::defaults();
    assert_eq!(defaults.policy_name(), "AllowAll");
    assert!(defaults.executor_is_inline());
    assert!(defaults.kind_is_plain());
    let other_thread = std::thread::spawn(|| airlock::defaults().policy_name())
        .join()
        .unwrap();
    assert_eq!(other_thread, "AllowAll");
}
