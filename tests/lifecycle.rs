//! A scope's lifecycle: rule 3 (flush on success, discard on failure or
//! panic), the closure forms, and rule 12 (misuse of an `ActiveScope` is a
//! state error, not a panic).

use std::panic::{AssertUnwindSafe, catch_unwind};

use airlock::{ActiveScope, Error, Scope, StateError, StateErrorKind};
use airlock_tests::{Log, Record, labels};

/// The kind of the state error in `result`, or a panic explaining what came
/// instead.
fn state_kind<T: std::fmt::Debug>(result: airlock::Result<T>) -> StateErrorKind {
    match result {
        Err(Error::State(state)) => state.kind(),
        other => panic!("expected a state error, got {other:?}"),
    }
}

/// A panic payload as text.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Rule 3: flush on success, discard on failure.
// ---------------------------------------------------------------------------

/// Rule 3: `Ok` flushes, in order.
#[test]
fn ok_flushes() {
    let log = Log::new();
    let value = airlock::scope(|| -> airlock::Result<u32> {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.other("b"))?;
        Ok(7)
    })
    .unwrap();
    assert_eq!(value, 7, "the body's value is returned");
    assert_eq!(log.runs(), ["a", "b"]);
}

/// Rule 3: `Err` discards, and the body's error is returned unchanged.
#[test]
fn err_discards() {
    let log = Log::new();
    let error = airlock::scope(|| -> anyhow::Result<()> {
        airlock::enqueue(log.record("a"))?;
        anyhow::bail!("payment declined")
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "payment declined");
    assert!(log.runs().is_empty(), "an Err body must discard");
}

/// Rule 3: `Err` discards with other error types too (`io::Error`).
#[test]
fn err_discards_with_io_error() {
    let log = Log::new();
    let error = Scope::new()
        .run(|| -> std::io::Result<()> {
            airlock::enqueue(log.record("a"))?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
    assert_eq!(error.to_string(), "disk full");
    assert!(log.runs().is_empty());
}

/// Rule 3: an error from an enqueue, propagated with `?`, discards what was
/// enqueued before it.
#[test]
fn propagated_enqueue_error_discards_earlier_intents() {
    let log = Log::new();
    let error = Scope::new()
        .policy(airlock::BlockTasks::of::<airlock_tests::Other>().reject_at_enqueue())
        .run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.other("rejected"))?;
            airlock::enqueue(log.record("never"))
        })
        .unwrap_err();
    assert!(matches!(
        error,
        Error::PolicyViolation { task: "other", .. }
    ));
    assert!(log.runs().is_empty());
}

/// Rule 3: a panic discards and keeps unwinding with the original payload.
#[test]
fn panic_discards_and_keeps_unwinding() {
    let log = Log::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("a"))?;
            panic!("boom in the body");
        })
    }));
    let payload = caught.expect_err("the panic must keep unwinding");
    assert_eq!(panic_message(payload), "boom in the body");
    assert!(log.runs().is_empty(), "a panic must discard");
}

/// Rule 3: after a panic the thread has no leftover scope and the next scope
/// works normally.
#[test]
fn thread_is_usable_after_a_panicking_scope() {
    let log = Log::new();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        Scope::new().run(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("lost"))?;
            panic!("boom");
        })
    }));
    assert!(
        matches!(
            airlock::enqueue(log.record("x")),
            Err(Error::NoScope { .. })
        ),
        "the panicking scope must not stay current"
    );
    assert!(airlock::buffered().is_empty());
    airlock::scope(|| airlock::enqueue(log.record("next"))).unwrap();
    assert_eq!(log.runs(), ["next"]);
}

/// Rule 3: a panic in a nested scope discards the nested scope and the outer
/// one it unwinds through.
#[test]
fn panic_in_nested_scope_discards_both() {
    let log = Log::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("outer"))?;
            airlock::scope(|| -> airlock::Result<()> {
                airlock::enqueue(log.record("inner"))?;
                panic!("deep");
            })
        })
    }));
    assert!(caught.is_err());
    assert!(log.runs().is_empty());
    assert!(matches!(
        airlock::enqueue(log.record("x")),
        Err(Error::NoScope { .. })
    ));
}

/// Rule 3: `Scope::new().run` is the same lifecycle as `airlock::scope`.
#[test]
fn scope_new_run_flushes_on_ok_and_discards_on_err() {
    let log = Log::new();
    Scope::new()
        .run(|| airlock::enqueue(log.record("ok")))
        .unwrap();
    let _ = Scope::new().run(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("err"))?;
        Err(Error::TaskFailed {
            task: "stand-in",
            source: "simulated failure".into(),
        })
    });
    assert_eq!(log.runs(), ["ok"]);
}

/// Rule 3: a flush error is folded into the closure's result.
#[test]
fn flush_error_is_folded_into_the_result() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("first"))?;
        airlock::enqueue(log.fail("x"))?;
        airlock::enqueue(log.record("after"))?;
        Ok(())
    })
    .unwrap_err();
    let Error::Dispatch(dispatch) = &error else {
        panic!("expected a dispatch error, got {error:?}");
    };
    assert_eq!(dispatch.failed_task(), "fail");
    assert_eq!(dispatch.report().dispatched_count(), 1);
    assert_eq!(log.runs(), ["first", "x"], "fail fast: `after` not run");
    let undispatched = error.into_undispatched();
    assert_eq!(undispatched.len(), 2, "the failed intent, then the rest");
    assert_eq!(undispatched[0].name(), "fail");
    assert_eq!(
        undispatched[1]
            .payload::<Record>()
            .map(|r| r.label.as_str()),
        Some("after")
    );
}

/// Rule 3: a flush error is folded into an `anyhow` result too.
#[test]
fn flush_error_is_folded_into_an_anyhow_result() {
    let log = Log::new();
    let error = Scope::new()
        .run(|| -> anyhow::Result<()> {
            airlock::enqueue(log.fail("x"))?;
            Ok(())
        })
        .unwrap_err();
    let airlock_error = error
        .downcast_ref::<Error>()
        .expect("the flush error converts into the body's error type");
    assert_eq!(airlock_error.task(), Some("fail"));
}

/// Rule 3: when the body fails, a failing task is never run, so the body's
/// error is what comes back.
#[test]
fn body_error_wins_and_failing_task_is_not_run() {
    let log = Log::new();
    let error = airlock::scope(|| -> anyhow::Result<()> {
        airlock::enqueue(log.fail("x"))?;
        anyhow::bail!("body failed")
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "body failed");
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// Rule 12: ActiveScope misuse is a state error.
// ---------------------------------------------------------------------------

/// Rule 12: the imperative lifecycle works: enter, enqueue, exit, flush.
#[test]
fn active_scope_enter_exit_flush() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    scope.exit().unwrap();
    assert!(
        matches!(
            airlock::enqueue(log.record("x")),
            Err(Error::NoScope { .. })
        ),
        "after exit the scope is no longer current"
    );
    let report = scope.flush().unwrap();
    assert_eq!(report.dispatched().collect::<Vec<_>>(), ["record"]);
    assert_eq!(log.runs(), ["a"]);
}

/// Rule 12: flush or discard while the scope is current is `StillCurrent`,
/// and nothing is lost by the mistake.
#[test]
fn flush_or_discard_while_current_is_still_current() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    assert_eq!(state_kind(scope.flush()), StateErrorKind::StillCurrent);
    assert_eq!(state_kind(scope.discard()), StateErrorKind::StillCurrent);
    assert!(log.runs().is_empty());
    airlock::enqueue(log.record("b")).unwrap();
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(log.runs(), ["a", "b"]);
}

/// Rule 12: exit twice is `NotCurrent`.
#[test]
fn exit_twice_is_not_current() {
    let mut scope = Scope::new().enter().unwrap();
    scope.exit().unwrap();
    assert_eq!(state_kind(scope.exit()), StateErrorKind::NotCurrent);
    scope.discard().unwrap();
}

/// Rule 12: flush twice is `AlreadyFlushed`, and the second flush runs
/// nothing.
#[test]
fn flush_twice_is_already_flushed() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(state_kind(scope.flush()), StateErrorKind::AlreadyFlushed);
    assert_eq!(log.runs(), ["a"], "ran exactly once");
}

/// Rule 12: flush after discard is `AlreadyDiscarded`, and nothing runs.
#[test]
fn flush_after_discard_is_already_discarded() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    airlock::enqueue(log.record("b")).unwrap();
    scope.exit().unwrap();
    assert_eq!(
        scope.discard().unwrap(),
        2,
        "discard counts what it dropped"
    );
    assert_eq!(state_kind(scope.flush()), StateErrorKind::AlreadyDiscarded);
    assert_eq!(
        state_kind(scope.discard()),
        StateErrorKind::AlreadyDiscarded
    );
    assert!(log.runs().is_empty());
}

/// Rule 12: discard after flush is `AlreadyFlushed`.
#[test]
fn discard_after_flush_is_already_flushed() {
    let mut scope = Scope::new().enter().unwrap();
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(state_kind(scope.discard()), StateErrorKind::AlreadyFlushed);
}

/// Rule 12 with rule 7: after a failed flush, a second flush is
/// `FlushFailed` and runs nothing more.
#[test]
fn flush_after_failed_flush_is_flush_failed() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.fail("x")).unwrap();
    airlock::enqueue(log.record("after")).unwrap();
    scope.exit().unwrap();
    assert!(matches!(scope.flush(), Err(Error::Dispatch(_))));
    assert_eq!(state_kind(scope.flush()), StateErrorKind::FlushFailed);
    assert_eq!(state_kind(scope.discard()), StateErrorKind::FlushFailed);
    assert_eq!(log.runs(), ["x"]);
}

/// Rule 12: exiting a scope while one entered after it is on top is
/// `NotCurrent`; exiting in reverse order then works.
#[test]
fn exit_under_a_later_scope_is_not_current() {
    let log = Log::new();
    let mut first = Scope::new().enter().unwrap();
    let mut second = Scope::new().enter().unwrap();
    assert_eq!(state_kind(first.exit()), StateErrorKind::NotCurrent);
    airlock::enqueue(log.record("into-second")).unwrap();
    assert_eq!(second.len(), 1, "second is still the current scope");
    assert_eq!(first.len(), 0);
    second.exit().unwrap();
    // The first is current again: the second's intents are captured by it.
    let report = second.flush().unwrap();
    assert_eq!(report.captured(), 1);
    assert!(log.runs().is_empty());
    first.exit().unwrap();
    assert_eq!(first.captured_intents().len(), 1);
    first.flush().unwrap();
    assert_eq!(log.runs(), ["into-second"]);
}

/// Rules 8/9/12: an inner `ActiveScope` flushed after its enclosing scope
/// was exited must not escape past that scope's policy: either the flush is a
/// state error or the intents still reach the enclosing scope.
#[test]
fn inner_flushed_after_outer_exit_does_not_bypass_outer() {
    let log = Log::new();
    let mut outer = Scope::new().policy(airlock::DropAll).enter().unwrap();
    let mut inner = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("x")).unwrap();
    inner.exit().unwrap();
    outer.exit().unwrap();
    let inner_flush = inner.flush();
    assert!(
        matches!(inner_flush, Err(Error::State(_))) || inner_flush.is_ok(),
        "{inner_flush:?}"
    );
    let _ = outer.flush();
    assert!(
        log.runs().is_empty(),
        "the outer DropAll was bypassed: {:?}",
        log.runs()
    );
}

/// Rule 12: a state error is not a panic: every misuse above returns.
#[test]
fn misuse_never_panics() {
    let outcome = catch_unwind(|| {
        let mut scope = Scope::new().enter().unwrap();
        let mut errors = 0;
        errors += usize::from(scope.flush().is_err());
        errors += usize::from(scope.discard().is_err());
        scope.exit().unwrap();
        errors += usize::from(scope.exit().is_err());
        scope.flush().unwrap();
        errors += usize::from(scope.flush().is_err());
        errors += usize::from(scope.discard().is_err());
        errors
    });
    assert_eq!(outcome.expect("misuse panicked"), 5);
}

/// Rule 3/12: dropping an entered `ActiveScope` discards it and it stops
/// being current.
#[test]
fn dropping_an_entered_active_scope_discards() {
    let log = Log::new();
    let scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    drop(scope);
    assert!(log.runs().is_empty());
    assert!(matches!(
        airlock::enqueue(log.record("x")),
        Err(Error::NoScope { .. })
    ));
}

/// Rule 3/12: dropping an exited, unflushed `ActiveScope` discards.
#[test]
fn dropping_an_exited_active_scope_discards() {
    let log = Log::new();
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    scope.exit().unwrap();
    drop(scope);
    assert!(log.runs().is_empty());
}

/// Rule 3: a panic while an `ActiveScope` is entered discards it.
#[test]
fn panic_with_an_entered_active_scope_discards() {
    let log = Log::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _scope = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("a")).unwrap();
        panic!("boom");
    }));
    assert!(caught.is_err());
    assert!(log.runs().is_empty());
    assert!(airlock::buffered().is_empty());
}

/// `ActiveScope::intents/own_intents/captured_intents/len` while entered,
/// after exit, and after flush.
#[test]
fn active_scope_inspection() {
    let log = Log::new();
    let mut scope: ActiveScope = Scope::new().enter().unwrap();
    assert!(scope.is_empty());
    airlock::enqueue(log.record("own")).unwrap();
    airlock::scope(|| airlock::enqueue(log.other("nested"))).unwrap();
    airlock::enqueue(log.record("own-2")).unwrap();

    assert_eq!(scope.len(), 3);
    assert!(!scope.is_empty());
    let names: Vec<_> = scope.intents().iter().map(|i| i.name()).collect();
    assert_eq!(names, ["record", "other", "record"], "in enqueue order");
    let own: Vec<_> = scope
        .own_intents()
        .iter()
        .map(|i| i.payload::<Record>().unwrap().label.clone())
        .collect();
    assert_eq!(own, ["own", "own-2"]);
    let captured = scope.captured_intents();
    assert_eq!(captured.len(), 1);
    assert!(captured[0].is_captured());
    assert_eq!(captured[0].name(), "other");

    scope.exit().unwrap();
    assert_eq!(scope.len(), 3, "still buffered after exit");
    assert_eq!(scope.own_intents().len(), 2);
    assert!(log.runs().is_empty(), "inspection dispatches nothing");

    scope.flush().unwrap();
    assert_eq!(scope.len(), 0, "finished scopes hold nothing");
    assert!(scope.intents().is_empty());
    assert_eq!(log.runs(), ["own", "nested", "own-2"]);
}

/// `ActiveScope` Debug shows its state.
#[test]
fn active_scope_debug_shows_state() {
    let mut scope = Scope::new().enter().unwrap();
    assert!(format!("{scope:?}").contains("entered"));
    scope.exit().unwrap();
    assert!(format!("{scope:?}").contains("exited"));
    scope.discard().unwrap();
    assert!(format!("{scope:?}").contains("discarded"));
}

/// The state error in `result`, or a panic explaining what came instead.
fn state_error<T: std::fmt::Debug>(result: airlock::Result<T>) -> StateError {
    match result {
        Err(Error::State(state)) => state,
        other => panic!("expected a state error, got {other:?}"),
    }
}

/// Rule 12: state errors compare by what went wrong (the rule broken and the
/// task), not by the intent an ended handle hands back.
#[test]
fn state_errors_compare_by_rule_and_task() {
    let mut scope = Scope::new().enter().unwrap();
    let still_current = state_error(scope.flush());
    assert_eq!(still_current, state_error(scope.discard()), "same rule");
    scope.exit().unwrap();
    scope.flush().unwrap();
    let already_flushed = state_error(scope.flush());
    assert_ne!(still_current, already_flushed, "different rules");

    let log = Log::new();
    let ended = airlock::scope(airlock::handle).unwrap();
    let late = state_error(ended.enqueue(log.record("late")));
    let later = state_error(ended.enqueue(log.record("later")));
    let label = |state: &StateError| {
        let record = state.intent().and_then(|i| i.payload::<Record>());
        record.map(|r| r.label.clone())
    };
    assert_eq!(label(&late).as_deref(), Some("late"), "hands back its own");
    assert_eq!(label(&later).as_deref(), Some("later"));
    assert_eq!(late, later, "same rule, same task");
    let other = state_error(ended.enqueue(log.other("late")));
    assert_eq!(other.kind(), late.kind());
    assert_ne!(late, other, "same rule, another task");
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// capture and buffered.
// ---------------------------------------------------------------------------

/// `capture` returns the body's value and what it buffered, and dispatches
/// nothing.
#[test]
fn capture_returns_result_and_intents_without_dispatch() {
    let log = Log::new();
    let (value, intents) = airlock::capture(|| {
        airlock::enqueue(log.record("a")).unwrap();
        airlock::enqueue(log.other("b")).unwrap();
        42
    });
    assert_eq!(value, 42);
    let names: Vec<_> = intents.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["record", "other"]);
    assert!(log.runs().is_empty());
}

/// `capture` does not care whether the body failed: it returns the error and
/// the intents, and dispatches nothing.
#[test]
fn capture_of_a_failing_body_still_returns_intents() {
    let log = Log::new();
    let (result, intents) = airlock::capture(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        Err(Error::TaskFailed {
            task: "stand-in",
            source: "simulated failure".into(),
        })
    });
    assert!(result.is_err());
    assert_eq!(intents.len(), 1);
    assert!(log.runs().is_empty());
}

/// `capture` includes intents of nested scopes, marked as captured.
#[test]
fn capture_includes_nested_scopes() {
    let log = Log::new();
    let (_, intents) = airlock::capture(|| {
        airlock::enqueue(log.record("own")).unwrap();
        airlock::scope(|| airlock::enqueue(log.other("nested"))).unwrap();
    });
    assert_eq!(intents.len(), 2);
    assert!(!intents[0].is_captured());
    assert!(intents[1].is_captured());
    assert!(log.runs().is_empty());
}

/// After `capture`, no scope is left current.
#[test]
fn capture_leaves_no_scope_behind() {
    let log = Log::new();
    let _ = airlock::capture(|| airlock::enqueue(log.record("a")));
    assert!(matches!(
        airlock::enqueue(log.record("x")),
        Err(Error::NoScope { .. })
    ));
}

/// `buffered` sees the current scope's intents only, in order.
#[test]
fn buffered_sees_the_current_scope_only() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("outer"))?;
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.other("inner"))?;
            let inner = airlock::buffered();
            assert_eq!(inner.len(), 1);
            assert_eq!(inner[0].name(), "other");
            Ok(())
        })?;
        let outer: Vec<_> = airlock::buffered().iter().map(|i| i.name()).collect();
        assert_eq!(outer, ["record", "other"]);
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["outer", "inner"]);
}

/// Ending an `ActiveScope` (dropping it) while a scope entered after it is
/// still current takes it from under that scope: the later one stays current
/// and keeps buffering, but its intents, meant for the scope that ended,
/// have nowhere to go: its flush says so, and it can still be discarded.
#[test]
fn ending_an_active_scope_under_a_later_one_keeps_the_later_current() {
    let log = Log::new();
    let first = Scope::new().enter().unwrap();
    let mut second = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("first-only")).unwrap();
    drop(first);
    airlock::enqueue(log.record("second")).unwrap();
    assert_eq!(second.len(), 2);
    second.exit().unwrap();
    let error = second.flush().unwrap_err();
    assert!(
        matches!(&error, Error::State(state) if state.kind() == StateErrorKind::EnclosingNotCurrent),
        "{error:?}"
    );
    assert_eq!(second.discard().unwrap(), 2);
    assert!(log.runs().is_empty());
    assert!(matches!(
        airlock::enqueue(log.record("none")),
        Err(Error::NoScope { .. })
    ));
}

/// A closure scope's failed flush counts, without naming, the intents that
/// were dispatched before the failure (its report records only the
/// exceptions); an imperative flush's report lists every intent
/// (`is_detailed`).
#[test]
fn a_closure_scope_failed_flush_report_names_the_dispatched() {
    let log = Log::new();
    let error = airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(log.fail("x"))
    })
    .unwrap_err();
    let Error::Dispatch(dispatch) = &error else {
        panic!("expected a dispatch error, got {error:?}");
    };
    let report = dispatch.report();
    assert!(!report.is_detailed());
    assert_eq!(report.dispatched().count(), 0);
    assert_eq!(report.dispatched_count(), 2);

    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("c")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert!(report.is_detailed());
    assert_eq!(report.dispatched().collect::<Vec<_>>(), ["record"]);
}

/// A scope dropped while a scope entered after it is still current ends
/// from below: its own intents are discarded, and the later scope keeps
/// exactly its own, before and after, whatever they share underneath.
#[test]
fn a_scope_dropped_from_below_takes_only_its_own_intents() {
    let log = Log::new();
    // Below both, so that neither part starts at the bottom of the buffer.
    let mut outer = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("outer")).unwrap();
    let first = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("first-1")).unwrap();
    airlock::enqueue(log.record("first-2")).unwrap();
    let mut second = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("second-1")).unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(labels(&first.intents()), ["first-1", "first-2"]);
    drop(first);
    assert_eq!(labels(&second.intents()), ["second-1"]);
    airlock::enqueue(log.record("second-2")).unwrap();
    assert_eq!(labels(&airlock::buffered()), ["second-1", "second-2"]);
    second.exit().unwrap();
    assert_eq!(second.len(), 2);
    // It was entered inside the first, which is gone: it cannot hand its
    // intents on, and says so; a discard still works.
    assert_eq!(
        state_kind(second.flush()),
        StateErrorKind::EnclosingNotCurrent
    );
    assert_eq!(second.discard().unwrap(), 2);
    assert_eq!(labels(&outer.intents()), ["outer"]);
    outer.exit().unwrap();
    outer.discard().unwrap();
    assert!(log.runs().is_empty());
}

/// A closure scope that returns an `ActiveScope` it entered, still current,
/// ends its own frame from below: the active scope stays current and
/// captures the closure scope's intents (it is the current scope then).
#[test]
fn a_closure_scope_ends_itself_under_an_active_scope_it_returns() {
    let log = Log::new();
    let mut active = airlock::scope(|| {
        airlock::enqueue(log.record("s"))?;
        Scope::new().enter()
    })
    .unwrap();
    assert_eq!(labels(&active.intents()), ["s"]);
    active.exit().unwrap();
    // It was entered inside the closure scope, which has ended.
    assert_eq!(
        state_kind(active.flush()),
        StateErrorKind::EnclosingNotCurrent
    );
    assert_eq!(active.discard().unwrap(), 1);
    assert!(log.runs().is_empty());
}
