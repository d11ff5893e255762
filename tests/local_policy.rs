//! Local policy regions: rule 10 (`with_policy` and `with_policy_async`
//! apply a policy to the intents enqueued inside them, without a new buffer).

use std::panic::{AssertUnwindSafe, catch_unwind};

use airlock::{
    AllowAll, AssertNoEffects, BlockTasks, DropAll, Error, FlushReport, Intent, Policy, Scope,
    Violation,
};
use airlock_tests::{Calls, Log, Other, Record, Tag, seen};

/// The names of the policies each intent carries.
fn carried(intents: &[Intent]) -> Vec<Vec<&'static str>> {
    intents
        .iter()
        .map(|i| i.policies().map(|p| p.name()).collect())
        .collect()
}

/// Runs `f` in an entered scope and returns the flush report.
fn flush(f: impl FnOnce()) -> FlushReport {
    let mut scope = Scope::new().enter().unwrap();
    f();
    scope.exit().unwrap();
    scope.flush().unwrap()
}

// ---------------------------------------------------------------------------
// Synchronous regions.
// ---------------------------------------------------------------------------

/// Rule 10: a region applies to enqueues inside it only, not before or after.
#[test]
fn region_applies_inside_only() {
    let log = Log::new();
    let report = flush(|| {
        airlock::enqueue(log.record("before")).unwrap();
        airlock::with_policy(DropAll, || airlock::enqueue(log.record("inside"))).unwrap();
        airlock::enqueue(log.record("after")).unwrap();
    });
    assert_eq!(log.runs(), ["before", "after"]);
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    let second = report.entries().nth(1).expect("two entries");
    assert_eq!(second.task, "record");
    assert!(matches!(
        second.fate,
        airlock::Fate::Dropped { policy: "DropAll" }
    ));
}

/// Rule 10: the region travels with the intent: only intents enqueued inside
/// carry it.
#[test]
fn region_policy_is_captured_on_the_intent() {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        airlock::enqueue(log.record("before")).unwrap();
        airlock::with_policy(BlockTasks::of::<Other>(), || {
            airlock::enqueue(log.record("inside")).unwrap();
        });
        airlock::enqueue(log.record("after")).unwrap();
    });
    assert_eq!(
        carried(&intents),
        [vec![], vec!["BlockTasks"], vec![]] as [Vec<&str>; 3]
    );
}

/// Rule 10: a region opens no new buffer or boundary: intents land in the
/// current scope's buffer straight away.
#[test]
fn region_adds_no_buffer() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::with_policy(AllowAll, || {
        airlock::enqueue(log.record("a")).unwrap();
        assert_eq!(airlock::buffered().len(), 1);
    });
    assert_eq!(scope.own_intents().len(), 1, "not captured: no boundary");
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 10: the region's value is returned from `with_policy`.
#[test]
fn with_policy_returns_the_closure_value() {
    assert_eq!(airlock::with_policy(DropAll, || 5), 5);
}

/// Rule 10: regions nest; the innermost judges first, at enqueue and at flush,
/// and the scope's policy last.
#[test]
fn regions_nest_innermost_first() {
    let log = Log::new();
    let calls = Calls::default();
    let mut scope = Scope::new()
        .policy(Tag::new("scope", &calls))
        .enter()
        .unwrap();
    airlock::with_policy(Tag::new("outer", &calls), || {
        airlock::with_policy(Tag::new("inner", &calls), || {
            airlock::enqueue(log.record("a")).unwrap();
        });
        airlock::enqueue(log.record("b")).unwrap();
    });
    assert_eq!(
        carried(&scope.intents()),
        [vec!["inner", "outer"], vec!["outer"]]
    );
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(
        seen(&calls),
        [
            "enqueue:inner",
            "enqueue:outer",
            "enqueue:scope",
            "enqueue:outer",
            "enqueue:scope",
            "allows:inner",
            "allows:outer",
            "allows:scope",
            "allows:outer",
            "allows:scope",
        ]
    );
    assert_eq!(log.runs(), ["a", "b"]);
}

/// Rule 10: after an inner region closes, the outer region is in force again.
#[test]
fn outer_region_restored_after_inner_closes() {
    let log = Log::new();
    let report = flush(|| {
        airlock::with_policy(BlockTasks::of::<Other>(), || {
            airlock::with_policy(BlockTasks::of::<Record>(), || {
                airlock::enqueue(log.record("inner-record")).unwrap();
            });
            airlock::enqueue(log.record("outer-record")).unwrap();
            airlock::enqueue(log.other("outer-other")).unwrap();
        })
    });
    assert_eq!(log.runs(), ["outer-record"]);
    assert_eq!(report.dropped().count(), 2);
}

/// Rule 10: a region's `on_enqueue` can reject; the error names the region's
/// policy and the intent is not buffered.
#[test]
fn region_on_enqueue_rejection() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    let error =
        airlock::with_policy(AssertNoEffects, || airlock::enqueue(log.record("a"))).unwrap_err();
    assert!(
        matches!(
            error,
            Error::PolicyViolation {
                task: "record",
                policy: "AssertNoEffects",
                ..
            }
        ),
        "{error:?}"
    );
    let error = airlock::with_policy(BlockTasks::of::<Other>().reject_at_enqueue(), || {
        airlock::enqueue(log.other("b"))
    })
    .unwrap_err();
    assert!(matches!(
        error,
        Error::PolicyViolation {
            task: "other",
            policy: "BlockTasks",
            ..
        }
    ));
    assert!(scope.is_empty());
    airlock::enqueue(log.record("c")).unwrap();
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(log.runs(), ["c"]);
}

/// Rule 10: a region rejects before the scope's policy is asked.
#[test]
fn region_rejection_comes_before_the_scope_policy() {
    let log = Log::new();
    let calls = Calls::default();
    let result = Scope::new()
        .policy(Tag::new("scope", &calls))
        .run(|| airlock::with_policy(AssertNoEffects, || airlock::enqueue(log.record("a"))));
    assert!(result.is_err());
    assert!(seen(&calls).is_empty(), "{:?}", seen(&calls));
}

/// Rule 10: regions apply inside nested scopes, and still apply after those
/// intents are captured by the outer scope.
#[test]
fn region_applies_inside_nested_scopes() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    airlock::with_policy(DropAll, || {
        airlock::scope(|| airlock::enqueue(log.record("nested"))).unwrap();
    });
    airlock::enqueue(log.record("outer")).unwrap();
    let captured = outer.captured_intents();
    assert_eq!(carried(&captured), [vec!["DropAll"]]);
    outer.exit().unwrap();
    let report = outer.flush().unwrap();
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    assert_eq!(log.runs(), ["outer"]);
}

/// Rule 10: a region around a whole scope applies to everything enqueued in
/// it, in successive scopes.
#[test]
fn region_around_scopes() {
    let log = Log::new();
    airlock::with_policy(DropAll, || {
        airlock::scope(|| airlock::enqueue(log.record("first"))).unwrap();
        airlock::scope(|| airlock::enqueue(log.record("second"))).unwrap();
    });
    assert!(log.runs().is_empty());
    airlock::scope(|| airlock::enqueue(log.record("outside"))).unwrap();
    assert_eq!(log.runs(), ["outside"]);
}

/// The labels of `intents` and the policies each carries, sorted by label.
fn labelled(intents: &[Intent]) -> Vec<(String, Vec<&'static str>)> {
    let mut labelled: Vec<_> = intents
        .iter()
        .map(|i| {
            let label = i.payload::<Record>().expect("a record").label.clone();
            (label, i.policies().map(|p| p.name()).collect())
        })
        .collect();
    labelled.sort();
    labelled
}

/// Runs `first` in a region of `policy`, then enqueues a record labelled
/// `after` in the same region; returns what was buffered, as [`labelled`].
fn then_after<P: Policy>(policy: P, first: impl FnOnce(&Log)) -> Vec<(String, Vec<&'static str>)> {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        airlock::with_policy(policy, || {
            first(&log);
            airlock::enqueue(log.record("after")).unwrap();
        });
    });
    labelled(&intents)
}

// The first intent a region sends to the thread's buffer takes the region's
// own reference to its policies; whatever then moves that intent gives the
// reference back first. Each of the next tests moves it one way, then
// enqueues again in the same region.

/// Rule 10: every intent enqueued in a region carries it, the first and
/// those after it.
#[test]
fn every_intent_in_a_region_carries_it() {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        airlock::with_policy(BlockTasks::of::<Other>(), || {
            for label in ["a", "b", "c"] {
                airlock::enqueue(log.record(label)).unwrap();
            }
        });
    });
    assert_eq!(carried(&intents), vec![vec!["BlockTasks"]; 3]);
}

/// Rule 10 with rule 11: in a region around a handle's `run`, every intent
/// sent to the handle's scope carries the region.
#[test]
fn every_intent_sent_through_a_handle_in_a_region_carries_it() {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        let handle = airlock::handle().unwrap();
        let log = log.clone();
        std::thread::spawn(move || {
            airlock::with_policy(BlockTasks::of::<Other>(), || {
                handle.run(|| {
                    for label in ["a", "b"] {
                        airlock::enqueue(log.record(label)).unwrap();
                    }
                });
            });
        })
        .join()
        .unwrap();
    });
    assert_eq!(carried(&intents), vec![vec!["BlockTasks"]; 2]);
}

/// Rule 10 with rules 5 and 9: a region inside a scope whose policy rejects
/// one enqueue is still in force for the next.
#[test]
fn a_region_stays_in_force_after_its_scope_rejects() {
    let log = Log::new();
    let mut scope = Scope::new()
        .policy(BlockTasks::of::<Other>().reject_at_enqueue())
        .enter()
        .unwrap();
    airlock::with_policy(DropAll, || {
        let error = airlock::enqueue(log.other("refused")).unwrap_err();
        assert!(matches!(
            error,
            Error::PolicyViolation {
                policy: "BlockTasks",
                ..
            }
        ));
        airlock::enqueue(log.record("kept")).unwrap();
    });
    assert_eq!(
        labelled(&scope.intents()),
        [("kept".to_string(), vec!["DropAll"])]
    );
    scope.exit().unwrap();
    scope.discard().unwrap();
}

/// Panics in `on_enqueue` for the record with this label.
struct PanicsOn(&'static str);

impl Policy for PanicsOn {
    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        if intent
            .payload::<Record>()
            .is_some_and(|r| r.label == self.0)
        {
            panic!("the policy's hook panicked");
        }
        Ok(())
    }
}

/// Rule 10: a region whose policy panics at one enqueue, caught inside the
/// region, is still in force for the next.
#[test]
fn a_region_stays_in_force_after_its_hook_panics() {
    let buffered = then_after(PanicsOn("boom"), |log| {
        let caught = catch_unwind(AssertUnwindSafe(|| airlock::enqueue(log.record("boom"))));
        assert!(caught.is_err());
    });
    assert_eq!(buffered, [("after".to_string(), vec!["PanicsOn"])]);
}

/// Rule 10: after the region's first intent is discarded with a nested
/// scope, the next intent still carries the region.
#[test]
fn a_region_outlives_its_first_intent_discarded() {
    let buffered = then_after(BlockTasks::of::<Other>(), |log| {
        let _ = airlock::scope(|| {
            airlock::enqueue(log.record("discarded"))?;
            Err::<(), Box<dyn std::error::Error>>("discard".into())
        });
    });
    assert_eq!(buffered, [("after".to_string(), vec!["BlockTasks"])]);
}

/// Rule 10: after the region's first intent leaves with an `ActiveScope`
/// that exits, both carry the region.
#[test]
fn a_region_outlives_its_first_intent_taken_by_an_exit() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    let mut active = None;
    airlock::with_policy(BlockTasks::of::<Other>(), || {
        let mut inner = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("inner")).unwrap();
        inner.exit().unwrap();
        airlock::enqueue(log.record("outer")).unwrap();
        active = Some(inner);
    });
    let mut inner = active.expect("entered");
    assert_eq!(
        labelled(&inner.intents()),
        [("inner".to_string(), vec!["BlockTasks"])]
    );
    inner.discard().unwrap();
    assert_eq!(
        labelled(&outer.intents()),
        [("outer".to_string(), vec!["BlockTasks"])]
    );
    outer.exit().unwrap();
    outer.discard().unwrap();
}

/// Rule 10 with rule 8: after intents an `Independent` scope passes down
/// are put beneath the region's first intent, moving it, the next intent
/// still carries the region.
#[test]
fn a_region_outlives_its_first_intent_moved_up() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    Scope::new()
        .kind(airlock::Independent)
        .run(|| {
            let mut ended = Scope::new().enter()?;
            airlock::enqueue(log.record("ended"))?;
            ended.exit()?;
            airlock::with_policy(BlockTasks::of::<Other>(), || {
                airlock::enqueue(log.record("first"))?;
                // Passed down by the Independent scope to `outer`, whose part
                // ends where the Independent scope's, holding `first`, starts.
                ended.flush()?;
                airlock::enqueue(log.record("second"))
            })
        })
        .unwrap();
    let region = || vec!["BlockTasks"];
    assert_eq!(
        labelled(&outer.intents()),
        [
            ("ended".to_string(), vec![]),
            ("first".to_string(), region()),
            ("second".to_string(), region()),
        ]
    );
    outer.exit().unwrap();
    outer.discard().unwrap();
}

/// Rule 10: a region opened inside another after the outer one's first
/// enqueue still chains to it, and the outer one is in force again after.
#[test]
fn a_nested_region_chains_to_an_outer_one_already_used() {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        airlock::with_policy(DropAll, || {
            airlock::enqueue(log.record("a")).unwrap();
            airlock::with_policy(BlockTasks::of::<Other>(), || {
                airlock::enqueue(log.record("b")).unwrap();
            });
            airlock::enqueue(log.record("c")).unwrap();
        });
    });
    assert_eq!(
        carried(&intents),
        [
            vec!["DropAll"],
            vec!["BlockTasks", "DropAll"],
            vec!["DropAll"]
        ]
    );
}

/// Rule 10 with rule 5: an intent a region rejects leaves the region in
/// force for the next one, which carries it.
#[test]
fn a_region_stays_in_force_after_it_rejects() {
    let buffered = then_after(BlockTasks::of::<Other>().reject_at_enqueue(), |log| {
        let error = airlock::enqueue(log.other("refused")).unwrap_err();
        assert_eq!(carried(&error.into_undispatched()), [vec!["BlockTasks"]]);
    });
    assert_eq!(buffered, [("after".to_string(), vec!["BlockTasks"])]);
}

/// Rule 10 with rule 1: a region is not a scope: enqueue in it with no scope
/// is still `NoScope`.
#[test]
fn region_is_not_a_scope() {
    let log = Log::new();
    let result = airlock::with_policy(AllowAll, || airlock::enqueue(log.record("a")));
    assert!(matches!(result, Err(Error::NoScope { task: "record", .. })));
}

/// Rule 10: a panic inside a region restores the previous region state.
#[test]
fn panic_inside_region_restores_state() {
    let log = Log::new();
    let calls = Calls::default();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        airlock::with_policy(DropAll, || panic!("inside region"));
    }));
    assert!(caught.is_err());
    let (_, intents) = airlock::capture(|| airlock::enqueue(log.record("a")).unwrap());
    assert_eq!(intents[0].policies().count(), 0, "region leaked past panic");

    // Nested: the outer region survives a panic in an inner one.
    airlock::with_policy(Tag::new("outer", &calls), || {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            airlock::with_policy(DropAll, || panic!("inner region"));
        }));
        let (_, intents) = airlock::capture(|| airlock::enqueue(log.record("b")).unwrap());
        assert_eq!(carried(&intents), [vec!["outer"]]);
    });
    airlock::scope(|| airlock::enqueue(log.record("c"))).unwrap();
    assert_eq!(log.runs(), ["c"]);
}

/// Rule 10: a region does not reach another thread.
#[test]
fn region_does_not_reach_another_thread() {
    let log = Log::new();
    airlock::with_policy(DropAll, || {
        let task = log.record("thread");
        std::thread::spawn(move || airlock::scope(|| airlock::enqueue(task)))
            .join()
            .unwrap()
            .unwrap();
    });
    assert_eq!(log.runs(), ["thread"]);
}

// ---------------------------------------------------------------------------
// Asynchronous regions.
// ---------------------------------------------------------------------------

/// Rule 10 (async): the region follows the future across `.await`, even on a
/// multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_region_follows_the_future_across_await() {
    let log = Log::new();
    airlock::scope_async(async {
        airlock::enqueue(log.record("before"))?;
        airlock::with_policy_async(DropAll, async {
            airlock::enqueue(log.record("inside-1"))?;
            tokio::task::yield_now().await;
            airlock::enqueue(log.record("inside-2"))?;
            tokio::task::yield_now().await;
            airlock::enqueue(log.record("inside-3"))
        })
        .await?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("after"))
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["before", "after"]);
}

/// Rule 10 (async): the region returns the inner future's output and the
/// intents enqueued inside carry it.
#[tokio::test]
async fn async_region_policy_is_captured_on_intents() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    let value = airlock::with_policy_async(BlockTasks::of::<Other>(), async {
        airlock::enqueue(log.record("a")).unwrap();
        9
    })
    .await;
    assert_eq!(value, 9);
    assert_eq!(carried(&scope.intents()), [vec!["BlockTasks"]]);
    scope.exit().unwrap();
    scope.flush().unwrap();
}

/// Rule 10 (async): async regions nest, innermost first, and each is in force
/// only while its future runs.
#[tokio::test]
async fn async_regions_nest() {
    let log = Log::new();
    let calls = Calls::default();
    let intents = airlock::with_policy_async(Tag::new("outer", &calls), async {
        let mut scope = Scope::new().enter().unwrap();
        airlock::with_policy_async(Tag::new("inner", &calls), async {
            tokio::task::yield_now().await;
            airlock::enqueue(log.record("a")).unwrap();
        })
        .await;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("b")).unwrap();
        let intents = scope.intents();
        scope.exit().unwrap();
        scope.discard().unwrap();
        intents
    })
    .await;
    assert_eq!(carried(&intents), [vec!["inner", "outer"], vec!["outer"]]);
    let (_, after) = airlock::capture(|| airlock::enqueue(log.record("c")).unwrap());
    assert_eq!(after[0].policies().count(), 0, "region leaked after await");
}

/// Rule 10 (async): a sync region around the creation and first poll of an
/// async region is its outer region.
#[tokio::test]
async fn async_region_nests_in_sync_region_when_polled_inside_it() {
    let log = Log::new();
    let calls = Calls::default();
    let (_, intents) = airlock::capture(|| {
        airlock::with_policy(Tag::new("sync", &calls), || {
            let future = airlock::with_policy_async(Tag::new("async", &calls), async {
                airlock::enqueue(log.record("a")).unwrap();
            });
            // Drive it to completion right here: it never yields.
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut future = std::pin::pin!(future);
            assert!(future.as_mut().poll(&mut cx).is_ready());
        })
    });
    assert_eq!(carried(&intents), [vec!["async", "sync"]]);
}

/// Rule 10 (async) with rule 11: a region does not leak into a task spawned
/// from inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_region_does_not_leak_into_spawned_task() {
    let log = Log::new();
    let spawned_log = log.clone();
    airlock::with_policy_async(DropAll, async move {
        tokio::spawn(async move {
            airlock::scope_async(async {
                tokio::task::yield_now().await;
                airlock::enqueue(spawned_log.record("spawned"))
            })
            .await
        })
        .await
        .unwrap()
        .unwrap();
    })
    .await;
    assert_eq!(log.runs(), ["spawned"]);
}

/// Rule 10 (async): two futures interleaved in one task each see only their
/// own region.
#[tokio::test]
async fn async_region_does_not_leak_into_a_concurrent_future() {
    let log = Log::new();
    let in_region = airlock::scope_async(airlock::with_policy_async(DropAll, async {
        airlock::enqueue(log.record("region-1"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("region-2"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("region-3"))
    }));
    let outside = airlock::scope_async(async {
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("free-1"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("free-2"))
    });
    let (a, b) = tokio::join!(in_region, outside);
    a.unwrap();
    b.unwrap();
    assert_eq!(log.runs(), ["free-1", "free-2"]);
}

/// Rule 10 (async): an async region's `on_enqueue` rejection names its policy.
#[tokio::test]
async fn async_region_rejection() {
    let log = Log::new();
    let result = airlock::scope_async(airlock::with_policy_async(AssertNoEffects, async {
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("a"))
    }))
    .await;
    assert!(matches!(
        result,
        Err(Error::PolicyViolation {
            task: "record",
            policy: "AssertNoEffects",
            ..
        })
    ));
    assert!(log.runs().is_empty());
}

/// Rule 10 (async): dropping an async region future part-way restores the
/// thread's region state.
#[tokio::test]
async fn dropped_async_region_leaves_no_trace() {
    let log = Log::new();
    {
        let future = airlock::with_policy_async(DropAll, async {
            std::future::pending::<()>().await;
        });
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }
    let (_, intents) = airlock::capture(|| airlock::enqueue(log.record("a")).unwrap());
    assert_eq!(intents[0].policies().count(), 0);
}

/// The region is matched by payload type through `Record` too (sanity check
/// that `BlockTasks::of` and regions compose).
#[test]
fn region_block_by_type() {
    let log = Log::new();
    flush(|| {
        airlock::with_policy(BlockTasks::of::<Record>(), || {
            airlock::enqueue(log.record("blocked")).unwrap();
            airlock::enqueue(log.other("passes")).unwrap();
        })
    });
    assert_eq!(log.runs(), ["passes"]);
}

/// Rule 10: an async region opened inside a synchronous one nests in it:
/// what the future enqueues carries both policies, innermost first.
#[test]
fn an_async_region_nests_in_the_region_around_it() {
    let log = Log::new();
    let calls = Calls::default();
    let (_, intents) = airlock::capture(|| {
        airlock::with_policy(Tag::new("outer", &calls), || {
            airlock_tests::poll_once(airlock::with_policy_async(
                Tag::new("inner", &calls),
                async { airlock::enqueue(log.record("a")) },
            ))
        })
    });
    let names: Vec<_> = intents[0].policies().map(|p| p.name()).collect();
    assert_eq!(names, ["inner", "outer"]);
}

// ---------------------------------------------------------------------------
// Enqueue checks behind policies that never reject.
// ---------------------------------------------------------------------------

/// Built-in policies that never reject at enqueue are not asked on every
/// enqueue; a rejecting region outside or inside them still rejects, in
/// regions, in async regions, in scopes and in combinations.
#[test]
fn a_rejecting_policy_is_asked_whatever_surrounds_it() {
    let log = Log::new();
    let rejected = |result: airlock::Result<()>| {
        matches!(
            result,
            Err(Error::PolicyViolation {
                policy: "AssertNoEffects",
                ..
            })
        )
    };
    let mut scope = Scope::new().enter().unwrap();
    // Rejecting outside, never-rejecting inside.
    assert!(rejected(airlock::with_policy(AssertNoEffects, || {
        airlock::with_policy(DropAll, || airlock::enqueue(log.record("a")))
    })));
    // Never-rejecting outside, rejecting inside.
    assert!(rejected(airlock::with_policy(AllowAll, || {
        airlock::with_policy(AssertNoEffects, || airlock::enqueue(log.record("b")))
    })));
    // In a tuple or a list beside one that never rejects.
    assert!(rejected(airlock::with_policy(
        (DropAll, AssertNoEffects),
        || { airlock::enqueue(log.record("c")) }
    )));
    assert!(rejected(airlock::with_policy(
        vec![
            Box::new(DropAll) as Box<dyn airlock::Policy>,
            Box::new(AssertNoEffects)
        ],
        || airlock::enqueue(log.record("d"))
    )));
    // A BlockTasks that rejects at enqueue is asked; one that drops at flush
    // lets the intent be buffered.
    let blocked = airlock::with_policy(BlockTasks::of::<Other>().reject_at_enqueue(), || {
        airlock::enqueue(log.other("e"))
    });
    assert!(matches!(blocked, Err(Error::PolicyViolation { .. })));
    airlock::with_policy(BlockTasks::of::<Other>(), || {
        airlock::enqueue(log.other("f"))
    })
    .unwrap();
    assert_eq!(scope.len(), 1);
    scope.exit().unwrap();
    assert_eq!(scope.flush().unwrap().dropped().count(), 1);

    // Scopes: a rejecting scope below a never-rejecting one is asked.
    let nested = Scope::new().policy(AssertNoEffects).run(|| {
        Scope::new()
            .policy(DropAll)
            .run(|| airlock::enqueue(log.record("g")))
    });
    assert!(rejected(nested));
    assert!(rejected(
        Scope::new()
            .policy((AllowAll, AssertNoEffects))
            .run(|| airlock::enqueue(log.record("h")))
    ));
    assert!(log.runs().is_empty());
}

/// An async region made under a never-rejecting one, or around a rejecting
/// one, still rejects.
#[tokio::test]
async fn a_rejecting_async_region_is_asked_whatever_surrounds_it() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    let inner = airlock::with_policy_async(DropAll, async { airlock::enqueue(log.record("a")) });
    let result = airlock::with_policy_async(AssertNoEffects, inner).await;
    assert!(
        matches!(result, Err(Error::PolicyViolation { .. })),
        "{result:?}"
    );
    let inner =
        airlock::with_policy_async(AssertNoEffects, async { airlock::enqueue(log.record("b")) });
    let result = airlock::with_policy_async(AllowAll, inner).await;
    assert!(
        matches!(result, Err(Error::PolicyViolation { .. })),
        "{result:?}"
    );
    assert!(scope.is_empty());
    scope.exit().unwrap();
    scope.discard().unwrap();
}
