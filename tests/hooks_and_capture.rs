//! Hooks and capture (issue 6): a policy hook stays a hook even after it
//! flushes a parked scope; `buffered()` sees everything a scope holds, from
//! inside hooks too; a cancelled async scope owns what its teardown
//! enqueues; a failed inline task is kept for retry; `capture_async` and
//! `capture_report`.

use std::cell::RefCell;

use airlock::{
    ActiveScope, BlockTasks, DispatchError, Error, Independent, Intent, Policy, Scope, ScopeKind,
    Violation,
};
use airlock_tests::{
    Calls, Fail, Log, Record, YieldOnce, dispatch_error, labels, poll_times, seen,
};

// ---------------------------------------------------------------------------
// Item 18: a hook that flushes a parked scope is still a hook
// ---------------------------------------------------------------------------

thread_local! {
    static PARKED: RefCell<Option<ActiveScope>> = const { RefCell::new(None) };
}

/// Enters a scope, buffers `label` in it, exits it and parks it for
/// [`FlushesParked`] on this thread.
fn park(log: &Log, label: &str) {
    let mut parked = Scope::new().enter().unwrap();
    airlock::enqueue(log.record(label)).unwrap();
    parked.exit().unwrap();
    PARKED.with(|slot| *slot.borrow_mut() = Some(parked));
}

/// A policy whose hook (`on_enqueue` or `allows`, as `hook` says) flushes
/// the scope parked on its thread, then tries to enqueue, recording what
/// each returned.
struct FlushesParked {
    hook: &'static str,
    log: Log,
    outcomes: Calls,
}

impl FlushesParked {
    fn act(&self, hook: &str) {
        if hook != self.hook {
            return;
        }
        let Some(mut parked) = PARKED.with(|slot| slot.borrow_mut().take()) else {
            return;
        };
        let flushed = match parked.flush() {
            Ok(report) => format!("{hook}: flushed {}", report.dispatched_count()),
            Err(error) => format!("{hook}: flush failed: {error}"),
        };
        let enqueued = match airlock::enqueue(self.log.record("from-hook")) {
            Ok(()) => format!("{hook}: enqueued"),
            Err(Error::EnqueueInHook { .. }) => format!("{hook}: EnqueueInHook"),
            Err(other) => format!("{hook}: {other:?}"),
        };
        self.outcomes.lock().unwrap().extend([flushed, enqueued]);
    }
}

impl Policy for FlushesParked {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        self.act("on_enqueue");
        Ok(())
    }

    fn allows(&self, _: &Intent) -> bool {
        self.act("allows");
        true
    }
}

/// Issue 6, item 18: an `on_enqueue` hook that flushes a parked
/// `ActiveScope` (whose flush runs hooks of its own) still cannot enqueue
/// afterwards (before: the inner hook guard cleared the "in a hook" flag, and
/// the enqueue went on to panic on the borrowed scope stack).
#[test]
fn on_enqueue_cannot_enqueue_after_flushing_a_parked_scope() {
    let log = Log::new();
    let outcomes = Calls::default();
    park(&log, "parked");
    Scope::new()
        .policy(FlushesParked {
            hook: "on_enqueue",
            log: log.clone(),
            outcomes: outcomes.clone(),
        })
        .run(|| airlock::enqueue(log.record("x")))
        .unwrap();
    assert_eq!(
        seen(&outcomes),
        ["on_enqueue: flushed 1", "on_enqueue: EnqueueInHook"]
    );
    assert_eq!(log.runs(), ["parked", "x"]);
}

/// Issue 6, item 18: an `allows` hook (at flush, with an enclosing scope
/// still current) that flushes a parked `ActiveScope` still cannot enqueue
/// afterwards (before: the enqueue succeeded and escaped through the
/// enclosing scope, breaking rule 4).
#[test]
fn allows_cannot_enqueue_after_flushing_a_parked_scope() {
    let log = Log::new();
    let outcomes = Calls::default();
    park(&log, "parked");
    Scope::new()
        .kind(Independent)
        .run(|| {
            Scope::new()
                .policy(FlushesParked {
                    hook: "allows",
                    log: log.clone(),
                    outcomes: outcomes.clone(),
                })
                .run(|| airlock::enqueue(log.record("x")))
        })
        .unwrap();
    assert_eq!(
        seen(&outcomes),
        ["allows: flushed 1", "allows: EnqueueInHook"]
    );
    assert_eq!(log.runs(), ["parked", "x"], "nothing escaped from the hook");
}

// ---------------------------------------------------------------------------
// Item 19: `buffered()`
// ---------------------------------------------------------------------------

/// Issue 6, item 19: `buffered()` includes the intents sent through the
/// scope's handles, after its own; inside the handle's scope it shows what
/// was sent so far (before: handle-sent intents were missing).
#[test]
fn buffered_sees_intents_sent_through_handles() {
    let log = Log::new();
    let (result, intents) = airlock::capture(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("own"))?;
        let handle = airlock::handle()?;
        std::thread::scope(|s| {
            s.spawn(|| handle.enqueue(log.record("sent")))
                .join()
                .unwrap()
        })?;
        assert_eq!(labels(&airlock::buffered()), ["own", "sent"]);
        assert_eq!(labels(&handle.run(airlock::buffered)), ["sent"]);
        Ok(())
    });
    result.unwrap();
    assert_eq!(labels(&intents), ["own", "sent"]);
}

/// Records what `buffered()` shows each time its `on_enqueue` runs.
struct Peeks(Calls);

impl Policy for Peeks {
    fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
        let shown = labels(&airlock::buffered()).join(",");
        self.0.lock().unwrap().push(shown);
        Ok(())
    }
}

/// Issue 6, item 19: `buffered()` works inside `on_enqueue`, showing what
/// the scope held before the intent being judged (before: always empty in a
/// hook, as the scope stack was mutably borrowed).
#[test]
fn buffered_works_inside_on_enqueue() {
    let log = Log::new();
    let peeks = Calls::default();
    Scope::new()
        .policy(Peeks(peeks.clone()))
        .run(|| {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record("b"))?;
            airlock::enqueue(log.record("c"))
        })
        .unwrap();
    assert_eq!(seen(&peeks), ["", "a", "a,b"]);
    assert_eq!(log.runs(), ["a", "b", "c"]);
}

// ---------------------------------------------------------------------------
// Item 15: a cancelled async scope owns its teardown
// ---------------------------------------------------------------------------

/// Enqueues its intent when dropped, recording whether that worked.
struct EnqueueOnDrop {
    intent: Record,
    outcomes: Calls,
}

impl Drop for EnqueueOnDrop {
    fn drop(&mut self) {
        let outcome = format!("{:?}", airlock::enqueue(self.intent.clone()));
        self.outcomes.lock().unwrap().push(outcome);
    }
}

/// Issue 6, item 15: an async scope cancelled as the losing branch of
/// `tokio::select!`: its inner future is dropped with the scope current, so
/// an intent its destructors enqueue is discarded with the scope, not
/// captured by the enclosing scope (before: it escaped through the
/// enclosing scope, which flushed and ran it).
#[tokio::test]
async fn a_cancelled_async_scope_discards_what_its_teardown_enqueues() {
    let log = Log::new();
    let outcomes = Calls::default();
    airlock::scope_async(async {
        tokio::select! {
            biased;
            _ = Scope::new().run_async(async {
                let _guard = EnqueueOnDrop {
                    intent: log.record("teardown"),
                    outcomes: outcomes.clone(),
                };
                airlock::enqueue(log.record("body"))?;
                std::future::pending::<airlock::Result<()>>().await
            }) => unreachable!("the scope's future never completes"),
            () = std::future::ready(()) => {}
        }
        airlock::enqueue(log.record("outer"))
    })
    .await
    .unwrap();
    assert_eq!(seen(&outcomes), ["Ok(())"], "the teardown had a scope");
    assert_eq!(log.runs(), ["outer"], "body and teardown were discarded");
}

// ---------------------------------------------------------------------------
// Item 6: a failed inline task is kept for retry
// ---------------------------------------------------------------------------

/// Flushes `fail x` then `c` in the given way, returning the dispatch error.
fn fail_in(how: &str, log: &Log) -> Box<DispatchError> {
    /// A kind with every default: the batch goes through
    /// `InlineExecutor::dispatch` rather than the plain scope's loop.
    struct Kind;
    impl ScopeKind for Kind {}
    let body = || -> airlock::Result<()> {
        airlock::enqueue(log.fail("x"))?;
        airlock::enqueue(log.record("c"))
    };
    let error = match how {
        "closure" => airlock::scope(body).unwrap_err(),
        "kind" => Scope::new().kind(Kind).run(body).unwrap_err(),
        "active" => {
            let mut scope = Scope::new().enter().unwrap();
            body().unwrap();
            scope.exit().unwrap();
            scope.flush().unwrap_err()
        }
        "async" => poll_times(airlock::scope_async(async { body() }), 16)
            .expect("the scope finishes within a few polls")
            .unwrap_err(),
        _ => unreachable!(),
    };
    dispatch_error(error)
}

/// Issue 6, item 6: a task that returns `Err` under the inline executor is
/// kept: `DispatchError::failed()` is `Some`, with its payload, in every
/// flush path (the plain closure loop, `InlineExecutor::dispatch` for a
/// kind or an async scope, an `ActiveScope`), and the intents handed back
/// can be re-enqueued and run again (before: `failed()` was `None`, so the
/// failed intent could not be retried).
#[test]
fn a_failed_inline_task_is_handed_back_and_can_be_retried() {
    for how in ["closure", "kind", "active", "async"] {
        let log = Log::new();
        let error = fail_in(how, &log);
        let failed = error.failed().expect("the failed intent is kept");
        assert_eq!(
            failed.payload::<Fail>().map(|f| f.label.as_str()),
            Some("x"),
            "{how}"
        );
        assert_eq!(labels(error.not_attempted()), ["c"], "{how}");
        let back = error.into_undispatched();
        assert_eq!(labels(&back), ["<fail>", "c"], "{how}");
        assert_eq!(log.runs(), ["x"], "{how}");

        let retried = airlock::scope(|| back.into_iter().try_for_each(airlock::enqueue));
        let again = dispatch_error(retried.unwrap_err());
        assert_eq!(log.runs(), ["x", "x"], "{how}: the retry ran it again");
        assert_eq!(labels(&again.into_undispatched()), ["<fail>", "c"], "{how}");
    }
}

// ---------------------------------------------------------------------------
// Item 27: `capture_async` and `capture_report`
// ---------------------------------------------------------------------------

/// Issue 6, item 27: `capture_async` returns the future's output and every
/// intent it buffered, across awaits and from nested scopes; nothing runs,
/// and nothing reaches an enclosing scope.
#[tokio::test]
async fn capture_async_returns_what_a_future_buffered() {
    let log = Log::new();
    let outer = airlock::scope_async(async {
        let (out, intents) = airlock::capture_async(async {
            airlock::enqueue(log.record("before"))?;
            YieldOnce(false).await;
            airlock::scope_async(async {
                tokio::task::yield_now().await;
                airlock::enqueue(log.record("nested"))
            })
            .await?;
            airlock::enqueue(log.record("after"))?;
            Ok::<_, Error>(7)
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(labels(&intents), ["before", "nested", "after"]);
        assert!(
            airlock::buffered().is_empty(),
            "the enclosing scope got nothing"
        );
        Ok::<_, Error>(())
    })
    .await;
    outer.unwrap();
    assert!(log.runs().is_empty(), "nothing ran");
}

/// Issue 6, item 27: a `capture_async` future dropped unfinished discards
/// what it buffered, its teardown included: nothing reaches the enclosing
/// scope.
#[tokio::test]
async fn capture_async_dropped_unfinished_discards() {
    let log = Log::new();
    let outcomes = Calls::default();
    airlock::scope_async(async {
        tokio::select! {
            biased;
            _ = airlock::capture_async(async {
                let _guard = EnqueueOnDrop {
                    intent: log.record("teardown"),
                    outcomes: outcomes.clone(),
                };
                airlock::enqueue(log.record("body"))?;
                std::future::pending::<airlock::Result<()>>().await
            }) => unreachable!("the captured future never completes"),
            () = std::future::ready(()) => {}
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(seen(&outcomes), ["Ok(())"]);
    assert!(log.runs().is_empty());
}

/// Issue 6, item 27: `capture_report` flushes as an outermost scope would,
/// judging with every policy on the intents' path, and returns the report
/// and the intents that would have escaped; nothing runs, nothing reaches
/// an enclosing scope, and a failed body escapes nothing.
#[test]
fn capture_report_returns_the_report_and_what_would_escape() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        let (result, report, escaped) = airlock::capture_report(|| {
            airlock::with_policy(BlockTasks::names(["other"]), || {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.other("blocked"))
            })?;
            Scope::new().policy(BlockTasks::names(["fail"])).run(|| {
                airlock::enqueue(log.fail("blocked-by-nested"))?;
                airlock::enqueue(log.record("nested"))
            })
        });
        result?;
        assert_eq!(labels(&escaped), ["a", "nested"]);
        assert_eq!(report.dispatched_count(), 2);
        assert_eq!(
            report.dropped().collect::<Vec<_>>(),
            [("other", "BlockTasks"), ("fail", "BlockTasks")]
        );
        assert!(
            airlock::buffered().is_empty(),
            "the enclosing scope got nothing"
        );

        let (result, report, escaped) = airlock::capture_report(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("discarded"))?;
            Err(Error::TaskFailed {
                task: "body",
                source: "the body failed".into(),
            })
        });
        assert!(matches!(
            result,
            Err(Error::TaskFailed { task: "body", .. })
        ));
        assert!(escaped.is_empty());
        assert_eq!(report.dispatched_count(), 0);
        Ok(())
    })
    .unwrap();
    assert!(log.runs().is_empty(), "nothing ran");
}

// ---------------------------------------------------------------------------
// Item 15's principle for the other wrapping futures
// ---------------------------------------------------------------------------

/// Beyond issue 6's list, item 15's principle for a local policy region: a
/// `with_policy_async` future dropped unfinished drops its inner future with
/// the region in force, so an intent its destructors enqueue still answers
/// to the region's policy (here: blocked), instead of escaping it.
#[test]
fn a_cancelled_policy_region_judges_what_its_teardown_enqueues() {
    let log = Log::new();
    let outcomes = Calls::default();
    airlock::scope(|| -> airlock::Result<()> {
        let cancelled = poll_times(
            airlock::with_policy_async(BlockTasks::names(["record"]), async {
                let _guard = EnqueueOnDrop {
                    intent: log.record("teardown"),
                    outcomes: outcomes.clone(),
                };
                std::future::pending::<()>().await
            }),
            1,
        );
        assert!(cancelled.is_none());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen(&outcomes), ["Ok(())"]);
    assert!(log.runs().is_empty(), "the region's policy blocks `record`");
}

/// Beyond issue 6's list, item 15's principle for a handle: a
/// `ScopeHandle::run_async` future dropped unfinished drops its inner future
/// with the handle's scope current, so what its destructors enqueue joins
/// that scope, not whichever scope is current where it is dropped.
#[test]
fn a_cancelled_handle_future_sends_its_teardown_to_the_handles_scope() {
    let log = Log::new();
    let outcomes = Calls::default();
    let (in_elsewhere, in_handles_scope) = airlock::capture(|| {
        let handle = airlock::handle().unwrap();
        let ((), elsewhere) = airlock::capture(|| {
            let cancelled = poll_times(
                handle.run_async(async {
                    let _guard = EnqueueOnDrop {
                        intent: log.record("teardown"),
                        outcomes: outcomes.clone(),
                    };
                    std::future::pending::<()>().await
                }),
                1,
            );
            assert!(cancelled.is_none());
        });
        elsewhere
    });
    assert_eq!(seen(&outcomes), ["Ok(())"]);
    assert!(
        labels(&in_elsewhere).is_empty(),
        "{:?}",
        labels(&in_elsewhere)
    );
    assert_eq!(labels(&in_handles_scope), ["teardown"]);
}
