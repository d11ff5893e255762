//! Portable policies (they travel with jobs) and receipts (queue executors
//! report the engine's job ids): the core parts the queue integrations use.

use std::sync::{Arc, Mutex};

use airlock::{
    AssertNoEffects, BlockTasks, Dispatch, DropAll, Error, Executor, Intents, LogOnFlush, Policy,
    PortablePolicy, Receipt, Scope,
};
use airlock_tests::{Log, Record};

/// Records, per dispatched intent, the portable policy that travels with it,
/// and hands out a receipt per intent.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<Seen>>>);

/// A dispatched intent's label and the policy that travelled with it.
type Seen = (String, Option<PortablePolicy>);

impl Executor for Queue {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let intents = intents.into_vec();
        let mut seen = self.0.lock().unwrap();
        let mut receipts = Vec::new();
        for intent in &intents {
            let label = intent
                .payload::<Record>()
                .map_or("?".into(), |r| r.label.clone());
            receipts.push(Receipt {
                task: intent.name(),
                queue: "q".into(),
                job_id: format!("job-{}", seen.len()),
            });
            seen.push((label, airlock::portable_policy_of(intent)));
        }
        airlock::record_receipts(receipts);
        Dispatch::Done(Ok(()))
    }
}

impl Queue {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn the_json_form_is_small_and_round_trips() {
    let cases = [
        (PortablePolicy::DropAll, r#""drop_all""#),
        (PortablePolicy::AssertNoEffects, r#""assert_no_effects""#),
        (
            PortablePolicy::block_tasks(["send_email"]),
            r#"{"block_tasks":{"names":["send_email"]}}"#,
        ),
        (
            PortablePolicy::from(BlockTasks::names(["a", "b"]).reject_at_enqueue()),
            r#"{"block_tasks":{"names":["a","b"],"reject":true}}"#,
        ),
        (
            PortablePolicy::from(BlockTasks::names(["a"])),
            r#"{"block_tasks":{"names":["a"]}}"#,
        ),
        (
            PortablePolicy::from(BlockTasks::names(Vec::<String>::new())),
            r#"{"block_tasks":{"names":[]}}"#,
        ),
        (
            PortablePolicy::All(vec![
                PortablePolicy::DropAll,
                PortablePolicy::AssertNoEffects,
            ]),
            r#"{"all":["drop_all","assert_no_effects"]}"#,
        ),
    ];
    for (policy, json) in cases {
        assert_eq!(serde_json::to_string(&policy).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<PortablePolicy>(json).unwrap(),
            policy
        );
    }
    assert_eq!(PortablePolicy::from(DropAll), PortablePolicy::DropAll);
    assert_eq!(
        PortablePolicy::from(AssertNoEffects),
        PortablePolicy::AssertNoEffects
    );
}

#[test]
fn a_portable_policy_behaves_as_the_policy_it_stands_for() {
    let log = Log::new();
    let queue = Queue::default();
    Scope::new()
        .policy(PortablePolicy::block_tasks(["record"]))
        .executor(queue.clone())
        .run(|| airlock::enqueue(log.record("blocked")))
        .unwrap();
    assert!(queue.seen().is_empty(), "BlockTasks drops at flush");

    let rejecting = PortablePolicy::from(BlockTasks::names(["record"]).reject_at_enqueue());
    let error = Scope::new()
        .policy(rejecting)
        .run(|| airlock::enqueue(log.record("rejected")))
        .unwrap_err();
    assert!(matches!(error, Error::PolicyViolation { .. }), "{error}");

    let error = Scope::new()
        .policy(PortablePolicy::AssertNoEffects)
        .run(|| airlock::enqueue(log.record("asserted")))
        .unwrap_err();
    assert!(error.to_string().contains("AssertNoEffects"), "{error}");

    Scope::new()
        .policy(PortablePolicy::DropAll)
        .executor(queue.clone())
        .run(|| airlock::enqueue(log.record("dropped")))
        .unwrap();
    assert!(queue.seen().is_empty());
    assert!(log.runs().is_empty());
    assert_eq!(PortablePolicy::block_tasks(["x"]).name(), "BlockTasks");
}

#[test]
fn only_portable_policies_travel_and_the_flushing_scope_attaches_its_own() {
    let log = Log::new();
    let queue = Queue::default();
    Scope::new()
        .policy(BlockTasks::names(["other"]))
        .executor(queue.clone())
        .run(|| airlock::enqueue(log.record("plain")))
        .unwrap();
    let no_other = PortablePolicy::block_tasks(["other"]);
    Scope::new()
        .policy((LogOnFlush::new(), no_other.clone()))
        .executor(queue.clone())
        .run(|| airlock::enqueue(log.record("tuple")))
        .unwrap();
    // A `Vec` of policies travels as the portable ones it holds.
    let no_more = PortablePolicy::block_tasks(["more"]);
    Scope::new()
        .policy(vec![no_other.clone(), no_more.clone()])
        .executor(queue.clone())
        .run(|| airlock::enqueue(log.record("vec")))
        .unwrap();
    assert_eq!(
        queue.seen(),
        [
            ("plain".into(), None),
            ("tuple".into(), Some(no_other.clone())),
            (
                "vec".into(),
                Some(PortablePolicy::All(vec![no_other, no_more]))
            )
        ]
    );
}

#[test]
fn local_regions_and_nested_scopes_combine_without_duplicates() {
    let log = Log::new();
    let queue = Queue::default();
    let outer = PortablePolicy::block_tasks(["a"]);
    let inner = PortablePolicy::block_tasks(["b"]);
    Scope::new()
        .policy(outer.clone())
        .executor(queue.clone())
        .run(|| {
            airlock::with_policy(inner.clone(), || {
                Scope::new()
                    .policy(outer.clone())
                    .run(|| airlock::enqueue(log.record("deep")))
            })
        })
        .unwrap();
    assert_eq!(
        queue.seen(),
        [("deep".into(), Some(PortablePolicy::All(vec![inner, outer])))]
    );
}

#[test]
fn a_flush_report_lists_the_receipts_the_executor_recorded() {
    let log = Log::new();
    let queue = Queue::default();
    let mut scope = Scope::new().executor(queue).enter().unwrap();
    airlock::enqueue(log.record("one")).unwrap();
    airlock::enqueue(log.record("two")).unwrap();
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    let ids: Vec<_> = report
        .receipts()
        .iter()
        .map(|r| r.job_id.as_str())
        .collect();
    assert_eq!(ids, ["job-0", "job-1"]);
    assert_eq!(report.receipts()[0].task, "record");

    // A later flush on this thread through an executor without receipts
    // reports none: receipts do not leak between flushes.
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(log.record("inline")).unwrap();
    airlock::record_receipts([Receipt {
        task: "record",
        queue: "stale".into(),
        job_id: "stale".into(),
    }]);
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert!(report.receipts().is_empty(), "{:?}", report.receipts());

    // Receipts recorded outside any dispatch (that stale one, still on the
    // thread) are not listed by the next flush that records its own.
    let report = Scope::new()
        .executor(Queue::default())
        .enter()
        .and_then(|mut scope| {
            airlock::enqueue(log.record("three"))?;
            scope.exit()?;
            scope.flush()
        })
        .unwrap();
    let queues: Vec<_> = report.receipts().iter().map(|r| r.queue.as_str()).collect();
    assert_eq!(queues, ["q"]);
}

/// Through the `Policy` trait itself (as a user's own combinator calls it),
/// a portable policy answers as the policy it stands for.
#[test]
fn a_portable_policy_answers_through_the_policy_trait() {
    let log = Log::new();
    let intent = airlock::Intent::new(log.record("x"));
    let blocking = PortablePolicy::block_tasks(["record"]);
    assert!(!blocking.allows(&intent));
    assert!(blocking.on_enqueue(&intent).is_ok(), "drops at flush only");
    assert!(PortablePolicy::block_tasks(["other"]).allows(&intent));
    let rejecting = PortablePolicy::from(BlockTasks::names(["record"]).reject_at_enqueue());
    let violation = rejecting.on_enqueue(&intent).unwrap_err();
    assert!(
        violation.reason().contains("`record` is blocked"),
        "{violation}"
    );
    let rejecting_others = PortablePolicy::from(BlockTasks::names(["other"]).reject_at_enqueue());
    assert!(rejecting_others.on_enqueue(&intent).is_ok());
}
