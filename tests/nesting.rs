//! Nested scopes: rule 8 (captured by default, the outermost decides;
//! provenance; independent and selective scopes) and rule 9 (every policy on
//! the path counts).

use std::panic::{AssertUnwindSafe, catch_unwind};

use airlock::{
    AssertNoEffects, BlockTasks, Descendant, DropAll, Error, Independent, Intent, LogOnFlush,
    Release, Scope, ScopeKind,
};
use airlock_tests::{Calls, Log, Other, Record, Tag, labels, seen};

// ---------------------------------------------------------------------------
// Rule 8: captured by default.
// ---------------------------------------------------------------------------

/// Rule 8: an inner scope's intents are captured by the outer one and
/// dispatched only when the outer flushes.
#[test]
fn inner_intents_dispatch_only_when_outer_flushes() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::scope(|| airlock::enqueue(log.record("inner")))?;
        assert!(log.runs().is_empty(), "inner flush must not dispatch");
        let buffered = airlock::buffered();
        assert_eq!(labels(&buffered), ["inner"]);
        assert!(buffered[0].is_captured());
        airlock::enqueue(log.record("outer"))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["inner", "outer"], "in buffer order");
}

/// Rule 8: the inner flush reports what it handed to the outer scope.
#[test]
fn inner_flush_report_counts_captured_intents() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    let mut inner = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("b")).unwrap();
    inner.exit().unwrap();
    let report = inner.flush().unwrap();
    assert_eq!(report.captured(), 2);
    assert_eq!(report.dispatched_count(), 0);
    assert!(
        report.entries().len() == 0,
        "captured ones are not judged here"
    );
    outer.exit().unwrap();
    let report = outer.flush().unwrap();
    assert_eq!(report.dispatched().collect::<Vec<_>>(), ["record", "other"]);
    assert_eq!(report.captured(), 0);
    assert_eq!(log.runs(), ["a", "b"]);
}

/// Rule 8: when the outer scope fails, captured intents are discarded too.
#[test]
fn outer_err_discards_captured_intents() {
    let log = Log::new();
    let result = airlock::scope(|| -> anyhow::Result<()> {
        airlock::scope(|| airlock::enqueue(log.record("inner")))?;
        anyhow::bail!("outer failed")
    });
    assert!(result.is_err());
    assert!(log.runs().is_empty());
}

/// Rule 8: when the outer scope panics, captured intents are discarded.
#[test]
fn outer_panic_discards_captured_intents() {
    let log = Log::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::scope(|| airlock::enqueue(log.record("inner")))?;
            panic!("outer panicked");
        })
    }));
    assert!(caught.is_err());
    assert!(log.runs().is_empty());
}

/// Rule 8: an inner failure discards only the inner intents.
#[test]
fn inner_err_discards_only_inner_intents() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("outer-before"))?;
        let inner = airlock::scope(|| -> anyhow::Result<()> {
            airlock::enqueue(log.record("inner"))?;
            anyhow::bail!("inner failed")
        });
        assert!(inner.is_err());
        airlock::enqueue(log.record("outer-after"))
    })
    .unwrap();
    assert_eq!(log.runs(), ["outer-before", "outer-after"]);
}

/// Rule 8: provenance: a scope tells its own intents from captured ones.
#[test]
fn provenance_own_versus_captured() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("own-1")).unwrap();
    airlock::scope(|| airlock::enqueue(log.record("captured"))).unwrap();
    airlock::enqueue(log.record("own-2")).unwrap();
    assert_eq!(labels(&outer.own_intents()), ["own-1", "own-2"]);
    assert_eq!(labels(&outer.captured_intents()), ["captured"]);
    assert_eq!(
        outer
            .intents()
            .iter()
            .map(Intent::is_captured)
            .collect::<Vec<_>>(),
        [false, true, false]
    );
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["own-1", "captured", "own-2"]);
}

/// Rule 8: three levels deep, nothing escapes until the outermost flushes,
/// and order is preserved.
#[test]
fn deep_nesting_three_levels() {
    let log = Log::new();
    let mut level1 = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("l1-a")).unwrap();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("l2-a"))?;
        airlock::scope(|| airlock::enqueue(log.record("l3")))?;
        assert!(log.runs().is_empty());
        airlock::enqueue(log.record("l2-b"))
    })
    .unwrap();
    assert!(log.runs().is_empty(), "level 2 must not dispatch either");
    airlock::enqueue(log.record("l1-b")).unwrap();
    assert_eq!(
        labels(&level1.intents()),
        ["l1-a", "l2-a", "l3", "l2-b", "l1-b"]
    );
    assert_eq!(labels(&level1.captured_intents()), ["l2-a", "l3", "l2-b"]);
    level1.exit().unwrap();
    level1.flush().unwrap();
    assert_eq!(log.runs(), ["l1-a", "l2-a", "l3", "l2-b", "l1-b"]);
}

/// Rule 8: a middle scope that fails discards what it captured from below.
#[test]
fn middle_failure_discards_what_it_captured() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        let middle = airlock::scope(|| -> anyhow::Result<()> {
            airlock::scope(|| airlock::enqueue(log.record("deep")))?;
            anyhow::bail!("middle failed")
        });
        assert!(middle.is_err());
        airlock::enqueue(log.record("outer"))
    })
    .unwrap();
    assert_eq!(log.runs(), ["outer"]);
}

// ---------------------------------------------------------------------------
// Rule 8: custom kinds decide what descendants may dispatch.
// ---------------------------------------------------------------------------

/// Rule 8: an `Independent` scope lets its descendants dispatch their own
/// intents when they flush.
#[test]
fn independent_scope_lets_descendants_dispatch() {
    let log = Log::new();
    Scope::new()
        .kind(Independent)
        .run(|| -> airlock::Result<()> {
            airlock::scope(|| airlock::enqueue(log.record("inner")))?;
            assert_eq!(log.runs(), ["inner"], "dispatched by the inner scope");
            assert!(airlock::buffered().is_empty(), "nothing captured");
            airlock::enqueue(log.record("own"))?;
            assert_eq!(log.runs(), ["inner"]);
            Ok(())
        })
        .unwrap();
    assert_eq!(log.runs(), ["inner", "own"]);
}

/// Rule 8: intents let through by an `Independent` scope are offered to the
/// next ancestor, which captures them by default.
#[test]
fn independent_middle_passes_intents_on_to_the_next_ancestor() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    Scope::new()
        .kind(Independent)
        .run(|| airlock::scope(|| airlock::enqueue(log.record("deep"))))
        .unwrap();
    assert!(log.runs().is_empty(), "the outer plain scope captured it");
    assert_eq!(labels(&outer.captured_intents()), ["deep"]);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["deep"]);
}

/// Rule 9: what an `Independent` scope lets through still answers to its
/// policy: a `DropAll` around nested scopes cannot be escaped by nesting.
#[test]
fn independent_scope_policy_still_judges_what_it_lets_through() {
    let log = Log::new();
    Scope::new()
        .kind(Independent)
        .policy(DropAll)
        .run(|| -> airlock::Result<()> {
            let mut inner = Scope::new().enter()?;
            airlock::enqueue(log.record("inner"))?;
            inner.exit()?;
            let report = inner.flush()?;
            assert_eq!(
                report.dropped().collect::<Vec<_>>(),
                [("record", "DropAll")]
            );
            Ok(())
        })
        .unwrap();
    assert!(
        log.runs().is_empty(),
        "the Independent scope's DropAll was bypassed"
    );
}

/// Lets `Record` intents through and captures the rest.
struct RecordsOnly;

impl ScopeKind for RecordsOnly {
    fn before_descendant_flushes(&self, _: &Descendant<'_>, intents: &[Intent]) -> Release {
        Release::Only(
            intents
                .iter()
                .enumerate()
                .filter(|(_, i)| i.is::<Record>())
                .map(|(index, _)| index)
                .collect(),
        )
    }
}

/// Rule 8: a selective scope (`Release::Only`) lets some intents through and
/// captures the others.
#[test]
fn selective_scope_releases_only_some_intents() {
    let log = Log::new();
    let mut outer = Scope::new().kind(RecordsOnly).enter().unwrap();
    let mut inner = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.other("b")).unwrap();
    airlock::enqueue(log.record("c")).unwrap();
    inner.exit().unwrap();
    let report = inner.flush().unwrap();
    assert_eq!(report.captured(), 1);
    assert_eq!(
        report.dispatched().collect::<Vec<_>>(),
        ["record", "record"]
    );
    assert_eq!(log.runs(), ["a", "c"]);
    assert_eq!(labels(&outer.captured_intents()), ["b"]);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["a", "c", "b"]);
}

/// A marker kind for scopes whose intents are urgent.
struct Urgent;

impl ScopeKind for Urgent {}

/// Lets urgent descendants through, captures the rest, and records what it
/// was asked about.
struct TrustsUrgent(Calls);

impl ScopeKind for TrustsUrgent {
    fn before_descendant_flushes(&self, exiting: &Descendant<'_>, intents: &[Intent]) -> Release {
        let what = if exiting.kind::<Urgent>().is_some() {
            "urgent"
        } else if exiting.is_plain() {
            "plain"
        } else {
            "other"
        };
        self.0
            .lock()
            .unwrap()
            .push(format!("{what}:{}", intents.len()));
        if exiting.kind::<Urgent>().is_some() {
            Release::All
        } else {
            Release::None
        }
    }
}

/// Rule 8: a kind can inspect the exiting scope's kind (`Descendant::kind`).
#[test]
fn kind_inspects_the_descendant_kind() {
    let log = Log::new();
    let calls = Calls::default();
    Scope::new()
        .kind(TrustsUrgent(calls.clone()))
        .run(|| -> airlock::Result<()> {
            Scope::new()
                .kind(Urgent)
                .run(|| airlock::enqueue(log.record("urgent")))?;
            assert_eq!(log.runs(), ["urgent"]);
            airlock::scope(|| airlock::enqueue(log.record("plain")))?;
            Scope::new()
                .kind(Independent)
                .run(|| airlock::enqueue(log.record("independent")))?;
            assert_eq!(log.runs(), ["urgent"]);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen(&calls), ["urgent:1", "plain:1", "other:1"]);
    assert_eq!(log.runs(), ["urgent", "plain", "independent"]);
}

/// Rule 8: an ancestor kind is not asked when the descendant has nothing to
/// hand over.
#[test]
fn ancestor_kind_not_asked_for_an_empty_descendant() {
    let calls = Calls::default();
    Scope::new()
        .kind(TrustsUrgent(calls.clone()))
        .run(|| airlock::scope(|| -> airlock::Result<()> { Ok(()) }))
        .unwrap();
    assert!(seen(&calls).is_empty(), "{:?}", seen(&calls));
}

/// Rule 8: ancestors are asked nearest first; what the nearest captures is not
/// offered to the farther one.
#[test]
fn ancestors_are_asked_nearest_first() {
    let log = Log::new();
    let outer_calls = Calls::default();
    let middle_calls = Calls::default();
    Scope::new()
        .kind(TrustsUrgent(outer_calls.clone()))
        .run(|| {
            Scope::new()
                .kind(TrustsUrgent(middle_calls.clone()))
                .run(|| {
                    Scope::new()
                        .kind(Urgent)
                        .run(|| airlock::enqueue(log.record("urgent")))?;
                    airlock::scope(|| airlock::enqueue(log.record("plain")))
                })
        })
        .unwrap();
    // Urgent passes the middle, then the outer; plain is captured by the
    // middle; the middle's own flush then offers it to the outer.
    assert_eq!(seen(&middle_calls), ["urgent:1", "plain:1"]);
    assert_eq!(seen(&outer_calls), ["urgent:1", "other:1"]);
    assert_eq!(log.runs(), ["urgent", "plain"]);
}

// ---------------------------------------------------------------------------
// Rule 9: every policy on the path counts.
// ---------------------------------------------------------------------------

/// Rule 9: `AssertNoEffects` on an outer scope catches an enqueue made inside
/// a nested scope.
#[test]
fn outer_assert_no_effects_catches_nested_enqueue() {
    let log = Log::new();
    let result = Scope::new()
        .policy(AssertNoEffects)
        .run(|| airlock::scope(|| airlock::enqueue(log.record("sneaky"))));
    let error = result.unwrap_err();
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
    assert!(log.runs().is_empty());
}

/// Rule 9: an outer `AssertNoEffects` also catches enqueues in a nested scope
/// with its own permissive policy, two levels down.
#[test]
fn outer_assert_no_effects_catches_deeply_nested_enqueue() {
    let log = Log::new();
    let caught = Scope::new().policy(AssertNoEffects).run(|| {
        Scope::new().policy(LogOnFlush::new()).run(|| {
            airlock::scope(|| {
                let result = airlock::enqueue(log.record("deep"));
                assert!(matches!(result, Err(Error::PolicyViolation { .. })));
                Ok::<_, Error>(())
            })
        })
    });
    caught.unwrap();
    assert!(log.runs().is_empty());
}

/// Rule 9: an outer rejecting policy also catches enqueues in a nested
/// `Independent`-released scope (rejection happens at enqueue, before any
/// kind is asked).
#[test]
fn outer_rejection_applies_under_an_independent_scope() {
    let log = Log::new();
    Scope::new()
        .policy(BlockTasks::of::<Record>().reject_at_enqueue())
        .kind(Independent)
        .run(|| {
            airlock::scope(|| {
                assert!(airlock::enqueue(log.record("blocked")).is_err());
                airlock::enqueue(log.other("fine"))
            })
        })
        .unwrap();
    assert_eq!(log.runs(), ["fine"]);
}

/// Rule 9: an inner `DropAll` cannot be undone by its parent: the captured
/// intent still carries the inner policy, and the parent's flush drops it.
#[test]
fn inner_drop_all_cannot_be_undone_by_parent() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    Scope::new()
        .policy(DropAll)
        .run(|| airlock::enqueue(log.record("dry-run")))
        .unwrap();
    let captured = outer.captured_intents();
    assert_eq!(captured.len(), 1);
    let carried: Vec<_> = captured[0].policies().map(|p| p.name()).collect();
    assert_eq!(carried, ["DropAll"]);
    outer.exit().unwrap();
    let report = outer.flush().unwrap();
    assert_eq!(
        report.dropped().collect::<Vec<_>>(),
        [("record", "DropAll")]
    );
    assert!(log.runs().is_empty());
}

/// Rule 9: policies of every scope an intent was captured through are carried,
/// innermost first, and judge it at the final flush in that order, before the
/// flushing scope's own policy.
#[test]
fn captured_intents_carry_every_inner_scope_policy_innermost_first() {
    let log = Log::new();
    let calls = Calls::default();
    let mut outer = Scope::new()
        .policy(Tag::new("outer", &calls))
        .enter()
        .unwrap();
    Scope::new()
        .policy(Tag::new("middle", &calls))
        .run(|| {
            Scope::new()
                .policy(Tag::new("inner", &calls))
                .run(|| airlock::enqueue(log.record("a")))
        })
        .unwrap();
    let carried: Vec<_> = outer.captured_intents()[0]
        .policies()
        .map(|p| p.name())
        .collect();
    assert_eq!(carried, ["inner", "middle"]);
    calls.lock().unwrap().clear();
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(
        seen(&calls),
        ["allows:inner", "allows:middle", "allows:outer"]
    );
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 9: a middle `BlockTasks` still blocks what it captured from below,
/// after the outer scope captured it in turn.
#[test]
fn middle_block_tasks_survives_capture() {
    let log = Log::new();
    airlock::scope(|| {
        Scope::new().policy(BlockTasks::of::<Other>()).run(|| {
            airlock::scope(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("a"))?;
                airlock::enqueue(log.other("blocked"))
            })
        })
    })
    .unwrap();
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 9: `on_enqueue` of every enclosing scope runs, innermost first, after
/// the local regions.
#[test]
fn on_enqueue_runs_for_every_enclosing_scope_innermost_first() {
    let log = Log::new();
    let calls = Calls::default();
    Scope::new()
        .policy(Tag::new("outer", &calls))
        .run(|| {
            Scope::new().policy(Tag::new("middle", &calls)).run(|| {
                Scope::new().policy(Tag::new("inner", &calls)).run(|| {
                    airlock::with_policy(Tag::new("region", &calls), || {
                        airlock::enqueue(log.record("a"))
                    })
                })
            })
        })
        .unwrap();
    let enqueue: Vec<_> = seen(&calls)
        .into_iter()
        .filter(|c| c.starts_with("enqueue"))
        .collect();
    assert_eq!(
        enqueue,
        [
            "enqueue:region",
            "enqueue:inner",
            "enqueue:middle",
            "enqueue:outer"
        ]
    );
}

/// Rule 9: the first enclosing policy that rejects stops the check: policies
/// further out are not asked.
#[test]
fn first_rejecting_scope_policy_stops_the_check() {
    let log = Log::new();
    let calls = Calls::default();
    let result = Scope::new().policy(Tag::new("outer", &calls)).run(|| {
        Scope::new()
            .policy(AssertNoEffects)
            .run(|| airlock::enqueue(log.record("a")))
    });
    assert!(matches!(
        result,
        Err(Error::PolicyViolation {
            policy: "AssertNoEffects",
            ..
        })
    ));
    assert!(seen(&calls).is_empty(), "{:?}", seen(&calls));
}

/// Rule 9: a scope's own intents are judged only by its own policy, not by
/// policies of scopes nested inside it that have ended.
#[test]
fn own_intents_carry_no_scope_policies() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    Scope::new()
        .policy(DropAll)
        .run(|| airlock::enqueue(log.record("inner")))
        .unwrap();
    airlock::enqueue(log.record("own")).unwrap();
    let own = outer.own_intents();
    assert_eq!(own[0].policies().count(), 0);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["own"]);
}

/// Builds `depth` nested scopes, each enqueueing `per_level` intents before
/// opening the next (so every level holds its own intents and everything
/// captured below), with a tagging policy on levels 0, 10 and 20.
fn nest(log: &Log, calls: &Calls, depth: usize, per_level: usize) -> airlock::Result<()> {
    fn level(
        log: &Log,
        calls: &Calls,
        at: usize,
        depth: usize,
        per_level: usize,
    ) -> airlock::Result<()> {
        if at == depth {
            return Ok(());
        }
        let body = || -> airlock::Result<()> {
            for i in 0..per_level {
                airlock::enqueue(log.record(format!("{at}.{i}")))?;
            }
            level(log, calls, at + 1, depth, per_level)
        };
        let name = match at {
            0 => "level-0",
            10 => "level-10",
            20 => "level-20",
            _ => "",
        };
        if !name.is_empty() {
            Scope::new().policy(Tag::new(name, calls)).run(body)
        } else {
            airlock::scope(body)
        }
    }
    level(log, calls, 0, depth, per_level)
}

/// Issue 6, item 20: ten thousand nested scopes (each capture hands the whole
/// buffer up at once instead of moving it intent by intent) keep enqueue
/// order, provenance and every carried policy, innermost first; and tearing
/// down a buffer that deep neither recurses nor overflows the stack.
#[test]
fn ten_thousand_nested_scopes_keep_order_provenance_and_policies() {
    // The scopes themselves recurse in this test's code: give it room.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let log = Log::new();
            let calls = Calls::default();
            const DEPTH: usize = 10_000;
            let mut outer = Scope::new().enter().unwrap();
            nest(&log, &calls, DEPTH, 2).unwrap();
            assert_eq!(outer.len(), DEPTH * 2);
            let intents = outer.intents();
            let labels = airlock_tests::labels(&intents);
            let expected: Vec<String> = (0..DEPTH)
                .flat_map(|at| [format!("{at}.0"), format!("{at}.1")])
                .collect();
            assert_eq!(labels, expected, "enqueue order survives capture");
            assert!(intents.iter().all(Intent::is_captured));
            // An intent of level 25 carries the policies of levels 20, 10, 0.
            let carried: Vec<_> = intents[50].policies().map(|p| p.name()).collect();
            assert_eq!(carried, ["level-20", "level-10", "level-0"]);
            assert_eq!(
                intents[0].policies().map(|p| p.name()).collect::<Vec<_>>(),
                ["level-0"]
            );
            drop(intents);
            outer.exit().unwrap();
            calls.lock().unwrap().clear();
            let report = outer.flush().unwrap();
            assert_eq!(report.dispatched_count(), DEPTH * 2);
            assert_eq!(log.runs(), expected);

            // The same depth, discarded: the chunk chain is dropped without
            // recursing (this thread's stack would not hold a recursive drop
            // of 10,000 levels plus the scopes above).
            let log = Log::new();
            let mut outer = Scope::new().enter().unwrap();
            nest(&log, &calls, DEPTH, 1).unwrap();
            assert_eq!(outer.len(), DEPTH);
            outer.exit().unwrap();
            assert_eq!(outer.discard().unwrap(), DEPTH);
            assert!(log.runs().is_empty());
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Item 20: a capture that moves a whole buffer keeps its place among the
/// holder's own intents, and the holder's own intents keep theirs.
#[test]
fn whole_buffer_captures_interleave_with_own_intents() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("own-1")).unwrap();
    airlock::scope(|| -> airlock::Result<()> {
        // More than a few intents: captured as one piece.
        for i in 0..40 {
            airlock::enqueue(log.record(format!("inner-{i}")))?;
        }
        Ok(())
    })
    .unwrap();
    airlock::enqueue(log.record("own-2")).unwrap();
    airlock::scope(|| airlock::enqueue(log.record("small"))).unwrap();
    let labels = airlock_tests::labels(&outer.intents());
    assert_eq!(labels.len(), 43);
    assert_eq!(labels[0], "own-1");
    assert_eq!(labels[1], "inner-0");
    assert_eq!(labels[40], "inner-39");
    assert_eq!(labels[41], "own-2");
    assert_eq!(labels[42], "small");
    assert_eq!(outer.own_intents().len(), 2);
    assert_eq!(outer.captured_intents().len(), 41);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), labels);
}

/// Item 20: a scope holding a captured chunk hands it on with its own few
/// intents, however few they are.
#[test]
fn a_captured_chunk_moves_on_with_a_small_scope() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("middle"))?;
        airlock::scope(|| -> airlock::Result<()> {
            for i in 0..20 {
                airlock::enqueue(log.record(format!("inner-{i}")))?;
            }
            Ok(())
        })
    })
    .unwrap();
    assert_eq!(outer.len(), 21);
    let labels = labels(&outer.intents());
    assert_eq!(labels[0], "middle");
    assert_eq!(labels[20], "inner-19");
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), labels);
}

/// Rule 8 across three levels: what a selective scope releases lands in the
/// scope around it, between that scope's own intents and the selective
/// scope's, and each scope keeps exactly its own.
#[test]
fn released_intents_land_in_the_grandparent_in_order() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("outer")).unwrap();
    let mut middle = Scope::new().kind(RecordsOnly).enter().unwrap();
    airlock::enqueue(log.other("middle")).unwrap();
    let mut inner = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("released")).unwrap();
    airlock::enqueue(log.other("kept")).unwrap();
    inner.exit().unwrap();
    inner.flush().unwrap();
    assert_eq!(labels(&outer.intents()), ["outer", "released"]);
    assert_eq!(labels(&middle.intents()), ["middle", "kept"]);
    // The middle scope is still current and still takes enqueues.
    airlock::enqueue(log.other("late")).unwrap();
    assert_eq!(labels(&middle.intents()), ["middle", "kept", "late"]);
    middle.exit().unwrap();
    middle.flush().unwrap();
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["outer", "released", "middle", "kept", "late"]);
}

/// An `ActiveScope` flush captured whole by its parent still returns a
/// detailed report (it lists every intent it judged: none), with the count
/// it handed up.
#[test]
fn a_captured_active_scope_flush_is_detailed() {
    let log = Log::new();
    let mut outer = Scope::new().enter().unwrap();
    let mut inner = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    inner.exit().unwrap();
    let report = inner.flush().unwrap();
    assert!(report.is_detailed());
    assert_eq!(report.captured(), 1);
    assert_eq!(report.entries().len(), 0);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(log.runs(), ["a"]);
}
