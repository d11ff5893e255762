//! Async scopes (rule 3 for futures): `scope_async` and `Scope::run_async`
//! flush on `Ok`, discard on `Err`, panic and cancellation, follow their
//! future across `.await` and threads, nest, and fold flush errors into the
//! result.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use airlock::{DropAll, Error, Scope, StateErrorKind};
use airlock_tests::{Log, Noop, YieldOnce, labels};
use tokio::sync::{Barrier, oneshot};

/// Asserts that no scope is current here and that a new scope works: what a
/// thread or task must look like after a scope ended by panic or
/// cancellation.
async fn assert_clean_and_usable(log: &Log) {
    assert!(airlock::buffered().is_empty(), "a stale scope is current");
    assert!(matches!(
        airlock::enqueue(Noop {}),
        Err(Error::NoScope { task: "noop", .. })
    ));
    let before = log.runs().len();
    airlock::scope_async(async {
        airlock::enqueue(log.record("next"))?;
        tokio::task::yield_now().await;
        assert_eq!(labels(&airlock::buffered()), ["next"]);
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs()[before..], ["next"]);
}

/// Polls `future` exactly once.
async fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(move |cx| Poll::Ready(future.take().unwrap().poll(cx))).await
}

/// `Ok` flushes: the intents run when the future completes, not before
/// (rule 2), in enqueue order, across `.await` points.
#[tokio::test]
async fn ok_flushes_after_completion() {
    let log = Log::new();
    let out = airlock::scope_async(async {
        airlock::enqueue(log.record("a"))?;
        YieldOnce(false).await;
        airlock::enqueue(log.record("b"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("c"))?;
        assert!(log.runs().is_empty(), "nothing escapes before the flush");
        assert_eq!(labels(&airlock::buffered()), ["a", "b", "c"]);
        Ok::<_, Error>(42)
    })
    .await;
    assert_eq!(out.unwrap(), 42);
    assert_eq!(log.runs(), ["a", "b", "c"]);
}

/// `Err` discards: nothing runs and the body's own error comes back.
#[tokio::test]
async fn err_discards() {
    let log = Log::new();
    let out = airlock::scope_async(async {
        airlock::enqueue(log.record("a"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("b"))?;
        Err::<(), _>(anyhow::anyhow!("payment declined"))
    })
    .await;
    assert_eq!(out.unwrap_err().to_string(), "payment declined");
    assert!(log.runs().is_empty());
}

/// `Scope::new().run_async` takes the builder's settings: a `DropAll` async
/// scope dispatches nothing even on `Ok`.
#[tokio::test]
async fn run_async_uses_the_builder() {
    let log = Log::new();
    Scope::new()
        .policy(DropAll)
        .run_async(async { airlock::enqueue(log.record("a")) })
        .await
        .unwrap();
    assert!(log.runs().is_empty());
    Scope::new()
        .run_async(async { airlock::enqueue(log.record("b")) })
        .await
        .unwrap();
    assert_eq!(log.runs(), ["b"]);
}

/// The scope follows its future across `yield_now` on a multi-thread runtime:
/// many concurrent scoped tasks (which tokio moves between workers) each see
/// exactly their own intents after every `.await`, and each flush runs
/// exactly its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scope_follows_the_future_across_awaits_and_threads() {
    const TASKS: usize = 64;
    const STEPS: usize = 8;
    let barrier = Arc::new(Barrier::new(TASKS));
    let logs: Vec<Log> = (0..TASKS).map(|_| Log::new()).collect();
    let mut handles = Vec::new();
    for log in logs.clone() {
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            let mut threads = std::collections::HashSet::new();
            airlock::scope_async(async {
                barrier.wait().await;
                for step in 0..STEPS {
                    threads.insert(std::thread::current().id());
                    airlock::enqueue(log.record(step.to_string()))?;
                    tokio::task::yield_now().await;
                    let expected: Vec<String> = (0..=step).map(|s| s.to_string()).collect();
                    assert_eq!(labels(&airlock::buffered()), expected);
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
            threads.len()
        }));
    }
    let mut moved = 0;
    for handle in handles {
        if handle.await.unwrap() > 1 {
            moved += 1;
        }
    }
    let expected: Vec<String> = (0..STEPS).map(|s| s.to_string()).collect();
    for log in &logs {
        assert_eq!(log.runs(), expected);
    }
    // Not asserted (scheduling is the runtime's choice), but worth seeing.
    println!("{moved} of {TASKS} scoped tasks ran on more than one thread");
}

/// A scope future dropped before completion discards (cancellation): its
/// intents never run, and the task goes on with no scope and can open the
/// next one.
#[tokio::test]
async fn dropping_the_future_discards() {
    let log = Log::new();
    let mut future = Box::pin(airlock::scope_async(async {
        airlock::enqueue(log.record("a"))?;
        std::future::pending::<()>().await;
        Ok::<_, Error>(())
    }));
    assert!(poll_once(future.as_mut()).await.is_pending());
    assert!(
        airlock::buffered().is_empty(),
        "the scope is current only while its future is polled"
    );
    drop(future);
    assert!(log.runs().is_empty());
    assert_clean_and_usable(&log).await;
}

/// A future dropped before its first poll discards as well (nothing started,
/// nothing runs).
#[tokio::test]
async fn dropping_an_unpolled_future_is_harmless() {
    let log = Log::new();
    let future = airlock::scope_async(async { airlock::enqueue(log.record("a")) });
    drop(future);
    assert!(log.runs().is_empty());
    assert_clean_and_usable(&log).await;
}

/// `tokio::time::timeout` expiring cancels the scope: discarded, and the task
/// is usable for the next scope.
#[tokio::test]
async fn timeout_expiry_discards() {
    let log = Log::new();
    let out = tokio::time::timeout(
        Duration::from_millis(20),
        airlock::scope_async(async {
            airlock::enqueue(log.record("a"))?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            airlock::enqueue(log.record("b"))
        }),
    )
    .await;
    assert!(out.is_err(), "the timeout expired");
    assert!(log.runs().is_empty());
    assert_clean_and_usable(&log).await;
}

/// `JoinHandle::abort` on a task inside an async scope discards its intents;
/// the runtime's thread (current-thread runtime: the same thread as this
/// test) is left without a stale scope.
#[tokio::test]
async fn aborting_the_task_discards() {
    let log = Log::new();
    let (started, is_started) = oneshot::channel();
    let task_log = log.clone();
    let task = tokio::spawn(airlock::scope_async(async move {
        airlock::enqueue(task_log.record("a"))?;
        started.send(()).unwrap();
        std::future::pending::<()>().await;
        airlock::enqueue(task_log.record("b"))
    }));
    is_started.await.unwrap();
    task.abort();
    let joined = task.await.unwrap_err();
    assert!(joined.is_cancelled());
    assert!(log.runs().is_empty());
    assert_clean_and_usable(&log).await;
}

/// The same abort on a multi-thread runtime, where the task is dropped by a
/// worker thread: discarded, and the workers stay usable for new scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_task_on_a_worker_discards() {
    let log = Log::new();
    let mut tasks = Vec::new();
    let mut started = Vec::new();
    for i in 0..8 {
        let (tx, rx) = oneshot::channel();
        started.push(rx);
        let log = log.clone();
        tasks.push(tokio::spawn(airlock::scope_async(async move {
            airlock::enqueue(log.record(format!("aborted-{i}")))?;
            tokio::task::yield_now().await;
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        })));
    }
    for rx in started {
        rx.await.unwrap();
    }
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        assert!(task.await.unwrap_err().is_cancelled());
    }
    assert!(log.runs().is_empty());
    let mut checks = Vec::new();
    for _ in 0..8 {
        checks.push(tokio::spawn(async move {
            assert_clean_and_usable(&Log::new()).await
        }));
    }
    for check in checks {
        check.await.unwrap();
    }
}

/// A panic inside an async scope (in a spawned task) discards, the panic
/// reaches the `JoinHandle`, and the thread that polled it has no stale scope.
#[tokio::test]
async fn a_panic_inside_an_async_scope_discards() {
    let log = Log::new();
    let task_log = log.clone();
    let task = tokio::spawn(airlock::scope_async(async move {
        airlock::enqueue(task_log.record("a"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(task_log.record("b"))?;
        if std::hint::black_box(true) {
            panic!("boom");
        }
        Ok::<_, Error>(())
    }));
    let joined = task.await.unwrap_err();
    assert!(joined.is_panic());
    assert!(log.runs().is_empty());
    // Current-thread runtime: the panicking task was polled on this thread.
    assert_clean_and_usable(&log).await;
}

/// Nested async scopes are captured (rule 8): the inner scope's intents wait
/// for the outer flush, marked as captured, in order with the outer's own.
#[tokio::test]
async fn nested_async_scopes_are_captured() {
    let log = Log::new();
    airlock::scope_async(async {
        airlock::enqueue(log.record("outer-1"))?;
        airlock::scope_async(async {
            airlock::enqueue(log.record("inner"))?;
            tokio::task::yield_now().await;
            Ok::<_, Error>(())
        })
        .await?;
        assert!(log.runs().is_empty(), "the inner flush was captured");
        let buffered = airlock::buffered();
        assert_eq!(labels(&buffered), ["outer-1", "inner"]);
        assert!(!buffered[0].is_captured());
        assert!(buffered[1].is_captured());
        airlock::enqueue(log.record("outer-2"))?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["outer-1", "inner", "outer-2"]);
}

/// A failing inner async scope discards only its own intents; the outer scope
/// goes on and flushes its own.
#[tokio::test]
async fn a_failing_inner_async_scope_discards_only_its_own() {
    let log = Log::new();
    airlock::scope_async(async {
        airlock::enqueue(log.record("outer"))?;
        let inner = airlock::scope_async(async {
            airlock::enqueue(log.record("inner"))?;
            tokio::task::yield_now().await;
            Err::<(), _>(anyhow::anyhow!("inner failed"))
        })
        .await;
        assert!(inner.is_err());
        assert_eq!(labels(&airlock::buffered()), ["outer"]);
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["outer"]);
}

/// An outer async scope that fails discards what it captured from a
/// successful inner one.
#[tokio::test]
async fn a_failing_outer_async_scope_discards_captured_intents() {
    let log = Log::new();
    let out = airlock::scope_async(async {
        airlock::scope_async(async { airlock::enqueue(log.record("inner")) }).await?;
        tokio::task::yield_now().await;
        Err::<(), _>(anyhow::anyhow!("outer failed"))
    })
    .await;
    assert!(out.is_err());
    assert!(log.runs().is_empty());
}

/// Two sibling scopes interleaved on one thread (`join!`) inside an outer
/// scope each hold only their own intents; both are captured by the outer.
#[tokio::test]
async fn interleaved_sibling_scopes_stay_apart() {
    let log = Log::new();
    let sibling = |name: &'static str| {
        let log = log.clone();
        airlock::scope_async(async move {
            for i in 0..3 {
                airlock::enqueue(log.record(format!("{name}{i}")))?;
                tokio::task::yield_now().await;
            }
            let own: Vec<String> = (0..3).map(|i| format!("{name}{i}")).collect();
            assert_eq!(labels(&airlock::buffered()), own);
            Ok::<_, Error>(())
        })
    };
    airlock::scope_async(async {
        let (left, right) = tokio::join!(sibling("l"), sibling("r"));
        left?;
        right?;
        assert!(log.runs().is_empty());
        assert_eq!(airlock::buffered().len(), 6);
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let mut runs = log.runs();
    assert_eq!(runs.len(), 6);
    runs.sort();
    assert_eq!(runs, ["l0", "l1", "l2", "r0", "r1", "r2"]);
}

/// A flush error is folded into the async scope's result: `Ok` becomes the
/// dispatch error, which hands back what was not dispatched, the failed
/// intent first.
#[tokio::test]
async fn a_flush_error_is_folded_into_the_result() {
    let log = Log::new();
    let out = airlock::scope_async(async {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.fail("x"))?;
        tokio::task::yield_now().await;
        airlock::enqueue(log.record("b"))?;
        Ok::<_, Error>("body value")
    })
    .await;
    let error = out.unwrap_err();
    assert!(matches!(error, Error::Dispatch(_)), "{error:?}");
    assert_eq!(labels(&error.into_undispatched()), ["<fail>", "b"]);
    assert_eq!(log.runs(), ["a", "x"]);

    // Into another error type through `From<airlock::Error>`.
    let out = airlock::scope_async(async { anyhow::Ok(airlock::enqueue(log.fail("y"))?) }).await;
    let error = out.unwrap_err().downcast::<Error>().unwrap();
    assert_eq!(error.task(), Some("fail"));
}

/// A sync scope inside an async scope is captured by it: its intents wait for
/// the async scope's flush; a failing sync scope inside discards only its own.
#[tokio::test]
async fn sync_scopes_inside_async_scopes_are_captured() {
    let log = Log::new();
    airlock::scope_async(async {
        airlock::scope(|| airlock::enqueue(log.record("sync-ok")))?;
        tokio::task::yield_now().await;
        let failed = airlock::scope(|| -> airlock::Result<()> {
            airlock::enqueue(log.record("sync-err"))?;
            Err(Error::TaskFailed {
                task: "simulated",
                source: "simulated failure".into(),
            })
        });
        assert!(failed.is_err());
        assert!(log.runs().is_empty());
        assert_eq!(labels(&airlock::buffered()), ["sync-ok"]);
        assert!(airlock::buffered()[0].is_captured());
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["sync-ok"]);
}

/// An async scope with nothing buffered completes with the body's value
/// untouched.
#[tokio::test]
async fn an_empty_async_scope_returns_its_value() {
    let out = airlock::scope_async(async { Ok::<_, Error>(vec![1, 2, 3]) }).await;
    assert_eq!(out.unwrap(), [1, 2, 3]);
    assert!(airlock::buffered().is_empty());
}

/// A handle taken in an async scope reaches it from a task spawned on the
/// runtime; it ends with the scope (`Ended`, not a lost effect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_carries_an_async_scope_into_spawned_tasks() {
    let log = Log::new();
    let mut kept = None;
    airlock::scope_async(async {
        let handle = airlock::handle()?;
        kept = Some(handle.clone());
        let spawned_log = log.clone();
        tokio::spawn(handle.run_async(async move {
            airlock::enqueue(spawned_log.record("spawned"))?;
            tokio::task::yield_now().await;
            airlock::enqueue(spawned_log.record("spawned-after-yield"))
        }))
        .await
        .unwrap()?;
        assert!(log.runs().is_empty());
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(log.runs(), ["spawned", "spawned-after-yield"]);

    let handle = kept.unwrap();
    assert!(!handle.is_open());
    match handle.enqueue(log.record("late")) {
        Err(Error::State(state)) => assert_eq!(state.kind(), StateErrorKind::Ended),
        other => panic!("expected Ended, got {other:?}"),
    }
    assert_eq!(log.runs().len(), 2);
}

/// The report of an async flush that fails part way counts the intents
/// dispatched before the failure, for synchronous and asynchronous tasks.
#[tokio::test]
async fn a_failed_async_flush_counts_what_was_dispatched() {
    let log = Log::new();
    let error = airlock::scope_async(async {
        airlock::enqueue(log.record("a"))?;
        airlock::enqueue(log.record("b"))?;
        airlock::enqueue(log.fail("x"))?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap_err();
    let Error::Dispatch(dispatch) = &error else {
        panic!("expected a dispatch error, got {error:?}");
    };
    assert_eq!(dispatch.report().dispatched_count(), 2);

    let error = airlock::scope_async(async {
        airlock::enqueue(log.record_async("c"))?;
        airlock::enqueue(log.record_async("d"))?;
        airlock::enqueue(log.record_async("e"))?;
        airlock::enqueue(log.fail("y"))?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap_err();
    let Error::Dispatch(dispatch) = &error else {
        panic!("expected a dispatch error, got {error:?}");
    };
    assert_eq!(dispatch.report().dispatched_count(), 3);
    assert_eq!(log.runs(), ["a", "b", "x", "c", "d", "e", "y"]);
}
