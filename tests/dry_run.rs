//! `DryRun`: drops everything at flush and records what would have been
//! dispatched.

use airlock::{BlockTasks, DryRun, Scope};
use airlock_tests::Other;
use airlock_tests::{Log, labels};

#[test]
fn records_what_would_have_been_dispatched_and_runs_nothing() {
    let log = Log::new();
    let dry_run = DryRun::new();
    Scope::new()
        .policy(dry_run.clone())
        .run(|| {
            airlock::enqueue(log.record("a"))?;
            airlock::enqueue(log.record("b"))
        })
        .unwrap();
    assert_eq!(log.runs(), Vec::<String>::new());
    assert_eq!(dry_run.len(), 2);
    assert!(!dry_run.is_empty());
    let held = dry_run.take();
    assert_eq!(labels(&held), ["a", "b"]);
    assert!(held[0].to_string().starts_with("record("), "{}", held[0]);
    assert!(dry_run.is_empty(), "take empties the record");
}

#[test]
fn what_another_policy_drops_is_not_listed() {
    let log = Log::new();
    let dry_run = DryRun::new();
    Scope::new()
        .policy(dry_run.clone())
        .run(|| {
            airlock::enqueue(log.record("kept"))?;
            airlock::with_policy(BlockTasks::of::<Other>(), || {
                airlock::enqueue(log.other("blocked"))
            })
        })
        .unwrap();
    assert_eq!(labels(&dry_run.take()), ["kept"]);
}

#[test]
fn nested_scopes_are_included_and_failures_record_nothing() {
    let log = Log::new();
    let dry_run = DryRun::new();
    Scope::new()
        .policy(dry_run.clone())
        .run(|| {
            airlock::scope(|| airlock::enqueue(log.record("inner")))?;
            airlock::enqueue(log.record("outer"))
        })
        .unwrap();
    assert_eq!(labels(&dry_run.take()), ["inner", "outer"]);

    let failed: std::io::Result<()> = Scope::new().policy(dry_run.clone()).run(|| {
        airlock::enqueue(log.record("discarded"))?;
        Err(std::io::Error::other("the batch failed"))
    });
    assert!(failed.is_err());
    assert!(dry_run.is_empty());
    assert_eq!(log.runs(), Vec::<String>::new());
}

#[test]
fn the_report_names_it() {
    let log = Log::new();
    let dry_run = DryRun::new();
    let mut scope = Scope::new().policy(dry_run.clone()).enter().unwrap();
    airlock::enqueue(log.record("a")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert_eq!(report.dropped().collect::<Vec<_>>(), [("record", "DryRun")]);
    assert_eq!(format!("{dry_run:?}"), "DryRun { held: 1 }");
}
