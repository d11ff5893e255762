//! Isolation (rule 11): each thread and each async task has its own current
//! scope, nothing leaks between concurrent units of work, spawned work does
//! not inherit a scope unless it is carried there with a handle, and panic
//! and cancellation paths leave the thread or task clean.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use airlock::{
    AssertNoEffects, BlockTasks, Dispatch, Error, Executor, Intent, Policy, Run, Scope,
    ScopeHandle, StateErrorKind, Task, Violation,
};
use airlock_tests::{Log, Noop, labels};
use serde::{Deserialize, Serialize};

/// Identifies one intent of one unit of work. Name: `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tag {
    unit: u32,
    seq: u32,
}

impl Task for Tag {
    const NAME: &'static str = "tag";

    fn run(self) -> Run {
        Run::ok()
    }
}

fn tags(intents: &[Intent]) -> Vec<Tag> {
    intents
        .iter()
        .map(|i| *i.payload::<Tag>().expect("only tags are enqueued here"))
        .collect()
}

/// Tallies of a stress test. `wrong` counts every scope that held or
/// dispatched anything but exactly its own intents.
#[derive(Default, Debug)]
struct Tally {
    scopes: AtomicUsize,
    dispatched: AtomicUsize,
    wrong: AtomicUsize,
    first_wrong: Mutex<Option<String>>,
}

impl Tally {
    fn check(&self, what: &str, got: &[Tag], expected: &[Tag]) {
        if got != expected {
            self.wrong.fetch_add(1, Ordering::Relaxed);
            self.first_wrong
                .lock()
                .unwrap()
                .get_or_insert_with(|| format!("{what}: got {got:?}, expected {expected:?}"));
        }
    }

    fn assert_clean(&self) {
        assert_eq!(
            self.wrong.load(Ordering::Relaxed),
            0,
            "intents in the wrong scope; first: {:?}",
            self.first_wrong.lock().unwrap()
        );
    }
}

/// An executor made for one scope: checks that exactly the expected intents
/// reach it, in order.
struct Expect {
    expected: Vec<Tag>,
    tally: Arc<Tally>,
}

impl Executor for Expect {
    fn dispatch(&self, intents: airlock::Intents) -> Dispatch {
        self.tally.scopes.fetch_add(1, Ordering::Relaxed);
        self.tally
            .dispatched
            .fetch_add(intents.len(), Ordering::Relaxed);
        self.tally
            .check("dispatched", &tags(&intents), &self.expected);
        Dispatch::Done(Ok(()))
    }
}

fn assert_no_scope_here() {
    assert!(airlock::buffered().is_empty(), "a stale scope is current");
    assert!(matches!(
        airlock::enqueue(Noop {}),
        Err(Error::NoScope { task: "noop", .. })
    ));
    assert!(matches!(
        airlock::handle(),
        Err(Error::State(ref s)) if s.kind() == StateErrorKind::NoScope
    ));
}

/// Asserts a fresh scope works here and holds only its own intent, with no
/// leftover local policy.
fn assert_usable() {
    assert_no_scope_here();
    let log = Log::new();
    let (result, intents) = airlock::capture(|| airlock::enqueue(log.record("fresh")));
    result.unwrap();
    assert_eq!(labels(&intents), ["fresh"]);
    assert_eq!(intents[0].policies().count(), 0, "a stale local policy");
    airlock::scope(|| airlock::enqueue(log.record("ran"))).unwrap();
    assert_eq!(log.runs(), ["ran"]);
    assert_no_scope_here();
}

// ---------------------------------------------------------------------------
// (a) threads
// ---------------------------------------------------------------------------

/// 64 threads × 1,000 scopes with one enqueue each, all at once: every scope
/// holds and dispatches exactly its own intent. The scopes alternate between
/// `capture`, an imperative `ActiveScope` and `Scope::run` with a checking
/// executor.
#[test]
fn threads_64_x_1000_scopes_never_mix() {
    const THREADS: u32 = 64;
    const SCOPES: u32 = 1_000;
    let tally = Arc::new(Tally::default());
    let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|unit| {
            let tally = tally.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for seq in 0..SCOPES {
                    let tag = Tag { unit, seq };
                    match seq % 3 {
                        0 => {
                            let (result, intents) = airlock::capture(|| airlock::enqueue(tag));
                            result.unwrap();
                            tally.check("captured", &tags(&intents), &[tag]);
                        }
                        1 => {
                            let mut scope = Scope::new().enter().unwrap();
                            airlock::enqueue(tag).unwrap();
                            tally.check("buffered", &tags(&airlock::buffered()), &[tag]);
                            scope.exit().unwrap();
                            tally.check("active scope", &tags(&scope.intents()), &[tag]);
                            assert_eq!(scope.discard().unwrap(), 1);
                        }
                        _ => Scope::new()
                            .executor(Expect {
                                expected: vec![tag],
                                tally: tally.clone(),
                            })
                            .run(|| {
                                airlock::enqueue(tag)?;
                                tally.check("buffered", &tags(&airlock::buffered()), &[tag]);
                                Ok::<_, Error>(())
                            })
                            .unwrap(),
                    }
                }
                assert!(airlock::buffered().is_empty());
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    tally.assert_clean();
    let flushed = (0..SCOPES).filter(|seq| seq % 3 == 2).count() * THREADS as usize;
    assert_eq!(tally.scopes.load(Ordering::Relaxed), flushed);
    assert_eq!(tally.dispatched.load(Ordering::Relaxed), flushed);
}

// ---------------------------------------------------------------------------
// (b) tokio tasks
// ---------------------------------------------------------------------------

/// 10,000 tokio tasks on a multi-thread runtime, each in its own
/// `scope_async`, enqueue across `.await` points with `yield_now` in between
/// (half of them through a nested async scope too): after every yield each
/// scope holds exactly its own intents, and each flush dispatches exactly
/// them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn tokio_10_000_tasks_never_mix() {
    const TASKS: u32 = 10_000;
    const STEPS: u32 = 4;
    let tally = Arc::new(Tally::default());
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|unit| {
            let tally = tally.clone();
            let nested = unit % 2 == 0;
            let mut expected: Vec<Tag> = (0..STEPS).map(|seq| Tag { unit, seq }).collect();
            if nested {
                expected.insert(2, Tag { unit, seq: 100 });
            }
            let executor = Expect {
                expected: expected.clone(),
                tally: tally.clone(),
            };
            tokio::spawn(Scope::new().executor(executor).run_async(async move {
                let mut own = Vec::new();
                for seq in 0..STEPS {
                    airlock::enqueue(Tag { unit, seq })?;
                    own.push(Tag { unit, seq });
                    tokio::task::yield_now().await;
                    if nested && seq == 1 {
                        airlock::scope_async(async move {
                            airlock::enqueue(Tag { unit, seq: 100 })?;
                            tokio::task::yield_now().await;
                            let inner = tags(&airlock::buffered());
                            Ok::<_, Error>(inner)
                        })
                        .await
                        .map(|inner| tally.check("inner", &inner, &[Tag { unit, seq: 100 }]))?;
                        own.push(Tag { unit, seq: 100 });
                    }
                    tally.check("after yield", &tags(&airlock::buffered()), &own);
                }
                Ok::<_, Error>(())
            }))
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    println!("10,000 scoped tasks took {:?}", started.elapsed());
    tally.assert_clean();
    assert_eq!(tally.scopes.load(Ordering::Relaxed), TASKS as usize);
    let nested = (TASKS / 2) as usize;
    assert_eq!(
        tally.dispatched.load(Ordering::Relaxed),
        (TASKS * STEPS) as usize + nested
    );
}

// ---------------------------------------------------------------------------
// (c) spawned work does not inherit a scope
// ---------------------------------------------------------------------------

/// A thread spawned inside a scope has no scope: its enqueue is `NoScope`
/// naming the task, and nothing joins the spawning scope.
#[test]
fn a_spawned_thread_does_not_inherit_the_scope() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("own"))?;
        let spawned = std::thread::spawn({
            let log = log.clone();
            move || airlock::enqueue(log.record("spawned"))
        })
        .join()
        .unwrap();
        assert!(matches!(
            spawned,
            Err(Error::NoScope { task: "record", .. })
        ));
        let scoped = std::thread::scope(|s| {
            s.spawn(|| airlock::enqueue(log.record("scoped-thread")))
                .join()
                .unwrap()
        });
        assert!(matches!(scoped, Err(Error::NoScope { task: "record", .. })));
        assert_eq!(labels(&airlock::buffered()), ["own"]);
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["own"]);
}

/// A tokio task spawned from inside an async scope has no scope, even on a
/// current-thread runtime where it runs on the very same thread.
#[tokio::test]
async fn a_spawned_task_does_not_inherit_the_scope_on_the_same_thread() {
    let log = Log::new();
    let this_thread = std::thread::current().id();
    airlock::scope_async(async {
        airlock::enqueue(log.record("own"))?;
        let spawned_log = log.clone();
        let (thread, spawned) = tokio::spawn(async move {
            tokio::task::yield_now().await;
            (
                std::thread::current().id(),
                airlock::enqueue(spawned_log.record("spawned")),
            )
        })
        .await
        .unwrap();
        assert_eq!(thread, this_thread, "current-thread runtime");
        assert!(matches!(
            spawned,
            Err(Error::NoScope { task: "record", .. })
        ));
        // A future created inside the scope but run elsewhere: same answer.
        let made_here = airlock::enqueue(log.record("made-here"));
        assert!(made_here.is_ok());
        let deferred_log = log.clone();
        let deferred = async move { airlock::enqueue(deferred_log.record("deferred")) };
        let deferred = tokio::spawn(deferred).await.unwrap();
        assert!(matches!(deferred, Err(Error::NoScope { .. })));
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["own", "made-here"]);
}

/// The same on a multi-thread runtime, for `spawn` and `spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_do_not_inherit_the_scope_on_workers() {
    let log = Log::new();
    airlock::scope_async(async {
        let spawned_log = log.clone();
        let spawned = tokio::spawn(async move { airlock::enqueue(spawned_log.record("a")) })
            .await
            .unwrap();
        assert!(matches!(
            spawned,
            Err(Error::NoScope { task: "record", .. })
        ));
        let blocking_log = log.clone();
        let blocking =
            tokio::task::spawn_blocking(move || airlock::enqueue(blocking_log.record("b")))
                .await
                .unwrap();
        assert!(matches!(
            blocking,
            Err(Error::NoScope { task: "record", .. })
        ));
        assert!(airlock::buffered().is_empty());
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert!(log.runs().is_empty());
}

// ---------------------------------------------------------------------------
// (d) handles carry a scope explicitly
// ---------------------------------------------------------------------------

/// `airlock::handle()` carries a scope into `std::thread::scope` threads:
/// their intents join the scope, wait for its flush, and dispatch with it.
#[test]
fn a_handle_carries_the_scope_into_threads() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        airlock::enqueue(log.record("own"))?;
        let handle = airlock::handle()?;
        assert!(handle.is_open());
        std::thread::scope(|s| {
            for t in 0..8 {
                let (handle, log) = (&handle, &log);
                s.spawn(move || {
                    for i in 0..10 {
                        if i % 2 == 0 {
                            handle.enqueue(log.record(format!("t{t}-{i}"))).unwrap();
                        } else {
                            handle
                                .run(|| airlock::enqueue(log.record(format!("t{t}-{i}"))))
                                .unwrap();
                        }
                    }
                });
            }
        });
        assert!(log.runs().is_empty(), "nothing escapes before the flush");
        assert!(handle.is_open());
        Ok(())
    })
    .unwrap();
    let runs = log.runs();
    assert_eq!(runs.len(), 81);
    assert_eq!(runs[0], "own");
    let mut expected: Vec<String> = (0..8)
        .flat_map(|t| (0..10).map(move |i| format!("t{t}-{i}")))
        .collect();
    expected.sort();
    let mut from_threads = runs[1..].to_vec();
    from_threads.sort();
    assert_eq!(from_threads, expected);
}

/// Intents sent through a handle are discarded with their scope when its body
/// fails, and judged by its policy at flush.
#[test]
fn handle_intents_share_the_scopes_fate_and_policy() {
    let log = Log::new();
    let failed = airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        std::thread::scope(|s| {
            s.spawn(|| handle.enqueue(log.record("failed-scope")).unwrap());
        });
        Err(Error::TaskFailed {
            task: "simulated",
            source: "simulated failure".into(),
        })
    });
    assert!(failed.is_err());
    assert!(log.runs().is_empty());

    Scope::new()
        .policy(BlockTasks::names(["other"]))
        .run(|| -> airlock::Result<()> {
            let handle = airlock::handle()?;
            std::thread::scope(|s| {
                s.spawn(|| {
                    handle.enqueue(log.other("blocked")).unwrap();
                    handle.enqueue(log.record("allowed")).unwrap();
                });
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(log.runs(), ["allowed"]);
}

/// An enclosing scope's `on_enqueue` sees enqueues made through a handle on
/// another thread (rule 9 across threads).
#[test]
fn handle_enqueues_meet_the_enclosing_policies() {
    let log = Log::new();
    let result = Scope::new()
        .policy(AssertNoEffects)
        .run(|| -> airlock::Result<()> {
            airlock::scope(|| -> airlock::Result<()> {
                let handle = airlock::handle()?;
                let sent = std::thread::scope(|s| {
                    s.spawn(|| handle.enqueue(log.record("x"))).join().unwrap()
                });
                match sent {
                    Err(Error::PolicyViolation { task, policy, .. }) => {
                        assert_eq!((task, policy), ("record", "AssertNoEffects"));
                    }
                    other => panic!("expected a policy violation, got {other:?}"),
                }
                Ok(())
            })
        });
    result.unwrap();
    assert!(log.runs().is_empty());
}

/// `handle.run_async` carries a scope into `tokio::spawn`ed tasks on a
/// multi-thread runtime, across their `.await`s; the intents dispatch when
/// the scope flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handle_carries_the_scope_into_tokio_tasks() {
    let log = Log::new();
    airlock::scope_async(async {
        let handle = airlock::handle()?;
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(handle.run_async(async move {
                    airlock::enqueue(log.record(format!("{t}-a")))?;
                    tokio::task::yield_now().await;
                    airlock::enqueue(log.record(format!("{t}-b")))
                }))
            })
            .collect();
        for task in tasks {
            task.await.unwrap()?;
        }
        assert!(log.runs().is_empty());
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let mut runs = log.runs();
    runs.sort();
    let mut expected: Vec<String> = (0..16)
        .flat_map(|t| [format!("{t}-a"), format!("{t}-b")])
        .collect();
    expected.sort();
    assert_eq!(runs, expected);
}

/// A scope opened inside `handle.run` is nested in the handle's scope: its
/// intents are captured there and dispatch when that scope flushes.
#[test]
fn scopes_inside_a_handle_are_captured_by_its_scope() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        std::thread::scope(|s| {
            s.spawn(|| handle.run(|| airlock::scope(|| airlock::enqueue(log.record("nested")))))
                .join()
                .unwrap()
        })?;
        assert!(
            log.runs().is_empty(),
            "captured, not dispatched by the thread"
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["nested"]);
}

fn assert_ended(result: airlock::Result<()>) {
    match result {
        Err(error @ Error::State(_)) => {
            let Error::State(state) = &error else {
                unreachable!()
            };
            assert_eq!(state.kind(), StateErrorKind::Ended);
            assert_eq!(error.task(), Some("record"));
            let message = error.to_string();
            assert!(message.contains("`record`"), "{message}");
            assert!(message.contains("already ended"), "{message}");
        }
        other => panic!("expected an Ended state error, got {other:?}"),
    }
}

/// Enqueueing through a handle after its scope ended is an `Ended` error that
/// names the task; nothing is buffered or run.
#[test]
fn a_handle_after_its_scope_ended_is_an_error() {
    let log = Log::new();
    let handle = airlock::scope(airlock::handle).unwrap();
    assert!(!handle.is_open());
    assert_ended(handle.enqueue(log.record("late")));
    assert_ended(handle.run(|| airlock::enqueue(log.record("late"))));
    assert!(log.runs().is_empty());
    assert_no_scope_here();
}

/// A thread that outlives its scope gets `Ended` when it enqueues late:
/// never a silently lost effect. What it sent in time is dispatched.
#[test]
fn a_thread_that_outlives_the_scope_gets_an_error() {
    let log = Log::new();
    let (early_sent, wait_early) = mpsc::channel::<()>();
    let (go, wait_go) = mpsc::channel::<()>();
    let mut worker = None;
    airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        let log = log.clone();
        worker = Some(std::thread::spawn(move || {
            handle.enqueue(log.record("early"))?;
            early_sent.send(()).unwrap();
            wait_go.recv().unwrap();
            handle.enqueue(log.record("late"))
        }));
        wait_early.recv().unwrap();
        Ok(())
    })
    .unwrap();
    // The scope ended (and flushed "early"); now let the worker try again.
    go.send(()).unwrap();
    assert_ended(worker.unwrap().join().unwrap());
    assert_eq!(log.runs(), ["early"]);
}

/// Threads racing their scope's end through handles: every enqueue that
/// returned `Ok` is dispatched with the scope, every one after the end is an
/// `Ended` error. Nothing is lost in between.
#[test]
fn handles_racing_the_end_of_their_scope_lose_nothing() {
    const THREADS: usize = 8;
    let log = Log::new();
    let warmed_up = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        for t in 0..THREADS {
            let (handle, log, warmed_up) = (handle.clone(), log.clone(), warmed_up.clone());
            workers.push(std::thread::spawn(move || {
                let mut accepted = 0usize;
                loop {
                    match handle.enqueue(log.record(format!("{t}-{accepted}"))) {
                        Ok(()) => accepted += 1,
                        Err(Error::State(state)) if state.kind() == StateErrorKind::Ended => {
                            return accepted;
                        }
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                    if accepted == 10 {
                        warmed_up.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        // End the scope while every thread is busy enqueueing.
        while warmed_up.load(Ordering::SeqCst) < THREADS {
            std::thread::yield_now();
        }
        Ok(())
    })
    .unwrap();
    let accepted: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(accepted >= 10 * THREADS);
    assert_eq!(
        log.runs().len(),
        accepted,
        "every accepted enqueue must be dispatched"
    );
}

/// `ScopeHandle::is_open` follows the scope: open while it runs, closed once
/// it flushed or discarded, and the same for every clone.
#[test]
fn is_open_follows_the_scope() {
    let mut kept: Vec<ScopeHandle> = Vec::new();
    airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        assert!(handle.is_open());
        kept.push(handle.clone());
        kept.push(handle);
        Ok(())
    })
    .unwrap();
    let _ = airlock::scope(|| -> airlock::Result<()> {
        kept.push(airlock::handle()?);
        assert!(kept[2].is_open());
        Err(Error::TaskFailed {
            task: "simulated",
            source: "simulated failure".into(),
        })
    });
    assert!(kept.iter().all(|h| !h.is_open()));
}

/// A nested scope opened through a handle after the handle's scope ended
/// must not lose its intents silently (rule 11: an error, not a lost effect).
#[test]
fn a_nested_scope_through_an_ended_handle_is_not_lost_silently() {
    let log = Log::new();
    let handle = airlock::scope(airlock::handle).unwrap();
    let result = handle.run(|| airlock::scope(|| airlock::enqueue(log.record("lost"))));
    assert!(
        result.is_err() || log.runs() == ["lost"],
        "the intent neither ran nor was reported: it was lost silently"
    );
}

/// Asking for a handle from inside a policy hook is an error (or at least not
/// a panic): hooks calling back into airlock must not hit a `RefCell` panic
/// (rule 12).
#[test]
fn a_handle_from_a_policy_hook_is_not_a_panic() {
    struct TakesHandle(Arc<Mutex<Option<bool>>>);
    impl Policy for TakesHandle {
        fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
            let outcome = catch_unwind(airlock::handle).is_ok();
            *self.0.lock().unwrap() = Some(outcome);
            Ok(())
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let log = Log::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        Scope::new()
            .policy(TakesHandle(seen.clone()))
            .run(|| airlock::enqueue(log.record("a")))
    }));
    assert!(result.is_ok(), "the scope itself panicked");
    assert_eq!(
        *seen.lock().unwrap(),
        Some(true),
        "airlock::handle() panicked inside a policy hook"
    );
}

/// `ScopeHandle::enqueue` called from inside a policy hook is an enqueue from
/// a hook: it returns `EnqueueInHook` naming the task (rule 4), like
/// `airlock::enqueue` does there, instead of panicking.
#[test]
fn handle_enqueue_from_a_policy_hook_is_enqueue_in_hook() {
    struct Forwards {
        to: ScopeHandle,
        got: Arc<Mutex<Option<String>>>,
    }
    impl Policy for Forwards {
        fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
            let outcome = catch_unwind(AssertUnwindSafe(|| self.to.enqueue(Noop {})));
            *self.got.lock().unwrap() = Some(match outcome {
                Ok(Err(Error::EnqueueInHook { task, .. })) => format!("EnqueueInHook({task})"),
                Ok(other) => format!("{other:?}"),
                Err(_) => "panic".to_owned(),
            });
            Ok(())
        }
    }
    let log = Log::new();
    let got = Arc::new(Mutex::new(None));
    airlock::scope(|| -> airlock::Result<()> {
        let to = airlock::handle()?;
        Scope::new()
            .policy(Forwards {
                to,
                got: got.clone(),
            })
            .run(|| airlock::enqueue(log.record("a")))
    })
    .unwrap();
    assert_eq!(got.lock().unwrap().as_deref(), Some("EnqueueInHook(noop)"));
}

// ---------------------------------------------------------------------------
// (e) panic and cancellation leave the thread or task clean
// ---------------------------------------------------------------------------

/// A panic in a scope (three deep, inside a local policy region) leaves the
/// thread with no current scope and no local region; the next scope works.
#[test]
fn a_panic_in_nested_scopes_leaves_the_thread_clean() {
    let log = Log::new();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("outer"))?;
            airlock::scope(|| -> airlock::Result<()> {
                airlock::with_policy(BlockTasks::names(["record"]), || {
                    airlock::scope(|| -> airlock::Result<()> {
                        airlock::enqueue(log.record("inner"))?;
                        panic!("boom")
                    })
                })
            })
        })
    }));
    assert!(panicked.is_err());
    assert!(log.runs().is_empty());
    assert_usable();
}

/// An `ActiveScope` left entered when a panic unwinds through it is popped
/// and discarded; the thread is clean afterwards.
#[test]
fn a_panic_with_an_entered_active_scope_leaves_the_thread_clean() {
    let log = Log::new();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _scope = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("a")).unwrap();
        let _inner = Scope::new().enter().unwrap();
        airlock::enqueue(log.record("b")).unwrap();
        panic!("boom");
    }));
    assert!(panicked.is_err());
    assert!(log.runs().is_empty());
    assert_usable();
}

/// Panics in hooks and tasks leave the thread clean: a policy panicking in
/// `on_enqueue` or `allows`, and a task panicking while the scope flushes.
#[test]
fn panics_in_hooks_and_tasks_leave_the_thread_clean() {
    struct PanicsOnEnqueue;
    impl Policy for PanicsOnEnqueue {
        fn on_enqueue(&self, _: &Intent) -> Result<(), Violation> {
            panic!("on_enqueue exploded")
        }
    }
    struct PanicsInAllows;
    impl Policy for PanicsInAllows {
        fn allows(&self, _: &Intent) -> bool {
            panic!("allows exploded")
        }
    }
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Explodes;
    impl Task for Explodes {
        const NAME: &'static str = "explodes";
        fn run(self) -> Run {
            panic!("task exploded")
        }
    }

    let log = Log::new();
    let runs: [&dyn Fn() -> airlock::Result<()>; 3] = [
        &|| {
            Scope::new()
                .policy(PanicsOnEnqueue)
                .run(|| airlock::enqueue(log.record("a")))
        },
        &|| {
            Scope::new().policy(PanicsInAllows).run(|| {
                airlock::scope(|| airlock::enqueue(log.record("b")))?;
                airlock::enqueue(log.record("c"))
            })
        },
        &|| {
            airlock::scope(|| {
                airlock::enqueue(Explodes)?;
                airlock::enqueue(log.record("d"))
            })
        },
    ];
    let [on_enqueue, allows, task] = runs;
    for run in [on_enqueue, allows] {
        assert!(catch_unwind(AssertUnwindSafe(run)).is_err());
        assert_usable();
    }
    // A task's panic is its failure: the flush stops there and says so.
    let error = catch_unwind(AssertUnwindSafe(task))
        .expect("a task's panic does not unwind through the flush")
        .unwrap_err();
    assert!(
        std::error::Error::source(&error)
            .is_some_and(|source| source.to_string().contains("task exploded")),
        "{error:?}"
    );
    assert_usable();
    assert!(log.runs().is_empty());
}

/// A panic inside `handle.run` on another thread pops the borrowed frame:
/// that thread is clean afterwards, and the scope still flushes its intents.
#[test]
fn a_panic_inside_a_handle_leaves_the_thread_clean() {
    let log = Log::new();
    airlock::scope(|| -> airlock::Result<()> {
        let handle = airlock::handle()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                let panicked = catch_unwind(AssertUnwindSafe(|| {
                    handle.run(|| {
                        airlock::enqueue(log.record("before-panic")).unwrap();
                        panic!("boom")
                    })
                }));
                assert!(panicked.is_err());
                assert_usable();
            })
            .join()
            .unwrap();
        });
        Ok(())
    })
    .unwrap();
    assert_eq!(log.runs(), ["before-panic"]);
}

/// Many scoped futures that panic, get cancelled or succeed, interleaved on
/// one current-thread runtime: each ends as it should (only the successful
/// ones dispatch), and afterwards the thread and the task are clean.
#[tokio::test]
async fn panics_and_cancellations_leave_tasks_clean() {
    let log = Log::new();
    for round in 0..50 {
        let task_log = log.clone();
        let outcome = round % 3;
        let task = tokio::spawn(airlock::scope_async(async move {
            airlock::enqueue(task_log.record(format!("{round}")))?;
            tokio::task::yield_now().await;
            match outcome {
                0 => panic!("round {round} panics"),
                1 => std::future::pending::<()>().await,
                _ => {}
            }
            Ok::<_, Error>(())
        }));
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        if outcome == 1 {
            task.abort();
        }
        match (outcome, task.await) {
            (0, Err(e)) => assert!(e.is_panic()),
            (1, Err(e)) => assert!(e.is_cancelled()),
            (2, Ok(Ok(()))) => {}
            (_, other) => panic!("round {round}: unexpected {other:?}"),
        }
        assert_no_scope_here();
    }
    let expected: Vec<String> = (0..50)
        .filter(|r| r % 3 == 2)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(log.runs(), expected);
    assert_usable();
    let log = Log::new();
    airlock::scope_async(async { airlock::enqueue(log.record("after")) })
        .await
        .unwrap();
    assert_eq!(log.runs(), ["after"]);
}

/// A handle taken inside a scope that is itself nested in `handle.run(..)`
/// still sees the owner scope's policies: an `AssertNoEffects` two handles
/// away rejects the enqueue.
#[test]
fn a_handle_taken_under_a_handle_keeps_the_owner_policies() {
    let log = Log::new();
    let result = Scope::new().policy(airlock::AssertNoEffects).run(|| {
        let outer = airlock::handle()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                outer.run(|| {
                    airlock::scope(|| {
                        let inner = airlock::handle()?;
                        inner.enqueue(log.record("a"))
                    })
                })
            })
            .join()
            .unwrap()
        })
    });
    assert!(
        matches!(
            result,
            Err(Error::PolicyViolation {
                policy: "AssertNoEffects",
                ..
            })
        ),
        "{result:?}"
    );
    assert!(log.runs().is_empty());
}
