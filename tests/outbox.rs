//! Outbox mode and the relay, on SQLite and PostgreSQL: intents written in
//! the caller's transaction, dispatched after COMMIT at least once, retried,
//! given up on (dead), surviving a killed process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::sqlx::{Backend, Relay, RowState, TxError, TxScope, outbox_id};
use airlock::{Dispatch, Executor, InlineExecutor, Intents};
use airlock_tests::sqlx_db::{AppError, Broken, Effect, Flaky, runs, unique};

fn effect(log: &str, label: impl Into<String>) -> Effect {
    Effect {
        log: log.to_owned(),
        label: label.into(),
    }
}

/// Runs the tasks in place, noting each intent's outbox id first.
#[derive(Clone, Default)]
struct NotingIds(Arc<Mutex<Vec<i64>>>);

impl Executor for NotingIds {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        self.0.lock().unwrap().extend(
            intents
                .iter()
                .map(|intent| outbox_id(intent).expect("no outbox id")),
        );
        InlineExecutor.dispatch(intents)
    }
}

/// Runs each intent by writing an order row through the same database, as a
/// task that updates the application's tables does.
#[derive(Clone)]
struct WritesOrders<DB: sqlx::Database>(sqlx::Pool<DB>);

impl<DB: sqlx::Database> Executor for WritesOrders<DB>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let pool = self.0.clone();
        let ids: Vec<i64> = intents
            .iter()
            .map(|i| 1000 + outbox_id(i).unwrap())
            .collect();
        drop(intents.into_vec());
        Dispatch::Pending(Box::pin(async move {
            for id in ids {
                sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                    .bind(id)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Ok(())
        }))
    }
}

/// Runs relay rounds until `done` holds (the rows may be waiting out a
/// backoff); fails after 60 s.
async fn relay_until<DB: Backend>(relay: &Relay<DB>, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the relay never got there"
        );
        if relay.run_once().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Commits `labels` as effects in one outbox-mode transaction.
macro_rules! commit_effects {
    ($pool:expr, $log:expr, $labels:expr) => {
        TxScope::new()
            .outbox()
            .run($pool, |_tx| {
                let log = $log.clone();
                let labels: Vec<String> = $labels.into_iter().map(Into::into).collect();
                Box::pin(async move {
                    for label in labels {
                        airlock::enqueue(effect(&log, label))?;
                    }
                    Ok::<_, TxError>(())
                })
            })
            .await
            .unwrap()
    };
}

macro_rules! outbox_scenarios {
    ($setup:expr, $insert_raw:expr) => {
        use super::*;

        #[tokio::test]
        async fn rows_are_written_before_commit_and_dispatched_by_the_relay() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            commit_effects!(&db.pool, log, ["a", "b", "c"]);
            assert!(runs(&log).is_empty(), "outbox mode dispatched at COMMIT");
            assert_eq!(outbox.count(RowState::Pending).await.unwrap(), 3);
            let rolled_back: Result<(), AppError> = TxScope::new()
                .outbox()
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(effect(&log, "rolled back"))?;
                        Err(AppError::Refused)
                    })
                })
                .await;
            assert!(rolled_back.is_err());
            assert_eq!(outbox.count(RowState::Pending).await.unwrap(), 3);

            let ids = NotingIds::default();
            let relay = Relay::new(db.pool.clone(), ids.clone());
            assert_eq!(relay.drain().await.unwrap(), 3);
            assert_eq!(runs(&log), ["a", "b", "c"]);
            let done = outbox.list(RowState::Done, 0, 10).await.unwrap();
            let done_ids: Vec<i64> = done.iter().map(|row| row.id).collect();
            assert_eq!(
                *ids.0.lock().unwrap(),
                done_ids,
                "executors see each row's id"
            );
            assert!(
                done.iter()
                    .all(|row| row.attempts == 1 && row.last_error.is_none())
            );
            assert_eq!(
                relay.drain().await.unwrap(),
                0,
                "a done row was claimed again"
            );
            assert_eq!(runs(&log).len(), 3);
            assert_eq!(
                outbox.purge_done(Duration::from_secs(3600)).await.unwrap(),
                0
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(outbox.purge_done(Duration::ZERO).await.unwrap(), 3);
            assert_eq!(outbox.count(RowState::Done).await.unwrap(), 0);
            db.finish().await;
        }

        #[tokio::test]
        async fn rows_keep_the_options_and_origin_of_their_intents() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            TxScope::new()
                .outbox()
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        let options = airlock::DispatchOptions::new()
                            .queue("mail")
                            .extra("tenant", "acme");
                        airlock::enqueue(
                            airlock::Intent::new(effect(&log, "with options"))
                                .with_options(options)
                                .with_origin("checkout"),
                        )?;
                        airlock::enqueue(effect(&log, "plain"))?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let rows = outbox.list(RowState::Pending, 0, 10).await.unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].origin.as_deref(), Some("checkout"));
            let intent = rows[0].decode().unwrap();
            assert_eq!(intent.options().queue.as_deref(), Some("mail"));
            assert_eq!(intent.options().extras["tenant"], "acme");
            assert_eq!(outbox_id(&intent), Some(rows[0].id));
            assert_eq!(intent.origin(), Some("checkout"));
            let plain = rows[1].decode().unwrap();
            assert_eq!(plain.options().queue, None);
            assert_eq!(rows[1].options, "{}");
            db.finish().await;
        }

        #[tokio::test]
        async fn the_transaction_policy_filters_before_the_outbox() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            TxScope::new()
                .outbox()
                .policy(airlock::BlockTasks::of::<Effect>())
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(effect(&log, "blocked"))?;
                        airlock::enqueue(Flaky {
                            log,
                            label: "allowed".into(),
                            failures: 0,
                        })?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let pending = outbox.list(RowState::Pending, 0, 10).await.unwrap();
            let tasks: Vec<&str> = pending.iter().map(|row| row.task.as_str()).collect();
            assert_eq!(tasks, ["sqlx_test.flaky"]);
            db.finish().await;
        }

        #[tokio::test]
        async fn tasks_can_write_to_the_database_while_the_relay_dispatches() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            commit_effects!(&db.pool, log, ["a", "b"]);
            let relay = Relay::new(db.pool.clone(), WritesOrders(db.pool.clone()));
            let drained = tokio::time::timeout(Duration::from_secs(10), relay.drain()).await;
            assert_eq!(
                drained.expect("the relay blocked its own tasks").unwrap(),
                2
            );
            assert_eq!(airlock_tests::order_ids!(&db.pool).len(), 2);
            db.finish().await;
        }

        #[tokio::test]
        async fn a_transient_failure_is_retried() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            TxScope::new()
                .outbox()
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(Flaky {
                            log,
                            label: "flaky".into(),
                            failures: 2,
                        })?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let relay = Relay::new(db.pool.clone(), InlineExecutor)
                .backoff(Duration::from_millis(1), Duration::from_millis(10));
            relay_until(&relay, async || {
                outbox.count(RowState::Done).await.unwrap() == 1
            })
            .await;
            assert_eq!(runs(&log), ["flaky", "flaky", "flaky"]);
            let done = outbox.list(RowState::Done, 0, 10).await.unwrap();
            assert_eq!(done[0].attempts, 3);
            db.finish().await;
        }

        #[tokio::test]
        async fn a_permanent_failure_ends_dead_with_its_last_error_and_can_be_replayed() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let one_try = airlock::DispatchOptions::new().max_attempts(1);
            TxScope::new()
                .outbox()
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(Broken {
                            log: log.clone(),
                            label: "doomed".into(),
                        })?;
                        airlock::enqueue(
                            airlock::Intent::new(Broken {
                                log,
                                label: "once".into(),
                            })
                            .with_options(one_try),
                        )?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let relay = Relay::new(db.pool.clone(), InlineExecutor)
                .max_attempts(3)
                .backoff(Duration::from_millis(1), Duration::from_millis(5));
            relay_until(&relay, async || {
                outbox.count(RowState::Dead).await.unwrap() == 2
            })
            .await;
            let dead = outbox.dead(10).await.unwrap();
            assert_eq!(dead[0].attempts, 3);
            assert_eq!(
                dead[0].last_error.as_deref(),
                Some("permanent failure: doomed")
            );
            assert_eq!(dead[1].attempts, 1, "the intent's own max_attempts");
            assert_eq!(runs(&log).iter().filter(|run| *run == "doomed").count(), 3);
            assert!(dead[0].to_string().contains("permanent failure: doomed"));

            assert_eq!(outbox.replay(&[dead[0].id]).await.unwrap(), 1);
            let pending = outbox.list(RowState::Pending, 0, 10).await.unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!((pending[0].id, pending[0].attempts), (dead[0].id, 0));
            assert_eq!(outbox.replay_all().await.unwrap(), 1);
            assert_eq!(outbox.count(RowState::Dead).await.unwrap(), 0);
            db.finish().await;
        }

        #[tokio::test]
        async fn malformed_rows_go_dead_with_a_clear_error_and_do_not_block() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            for (task, payload) in [("nope", "{}"), ("sqlx_test.effect", r#"{"wrong": 1}"#)] {
                sqlx::query($insert_raw)
                    .bind(task)
                    .bind(payload)
                    .execute(&db.pool)
                    .await
                    .unwrap();
            }
            commit_effects!(&db.pool, log, ["good"]);
            let relay = Relay::new(db.pool.clone(), InlineExecutor);
            relay.drain().await.unwrap();
            assert_eq!(runs(&log), ["good"]);
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let dead = outbox.dead(10).await.unwrap();
            assert_eq!(dead.len(), 2);
            let unknown = dead[0].last_error.as_deref().unwrap();
            assert!(unknown.contains("no task named `nope`"), "{unknown}");
            assert!(
                unknown.contains(&format!("outbox row {}", dead[0].id)),
                "{unknown}"
            );
            let payload = dead[1].last_error.as_deref().unwrap();
            assert!(
                payload.contains("does not match its arguments"),
                "{payload}"
            );
            assert_eq!(outbox.count(RowState::Done).await.unwrap(), 1);
            db.finish().await;
        }

        #[tokio::test]
        async fn concurrent_transactions_dispatch_exactly_the_committed_effects() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let relay = Relay::new(db.pool.clone(), InlineExecutor)
                .poll_interval(Duration::from_millis(20))
                .spawn();
            let post_commit_log = unique("log");
            let mut tasks = Vec::new();
            for id in 0..64_i64 {
                let pool = db.pool.clone();
                let (log, post_commit_log) = (log.clone(), post_commit_log.clone());
                tasks.push(tokio::spawn(async move {
                    // Even ids in outbox mode, odd ones post-commit; every
                    // third rolls back.
                    let scope = if id % 2 == 0 {
                        TxScope::new().outbox()
                    } else {
                        TxScope::new()
                    };
                    let result: Result<(), AppError> = scope
                        .run(&pool, |tx| {
                            Box::pin(async move {
                                sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                                    .bind(id)
                                    .execute(&mut **tx)
                                    .await?;
                                let log = if id % 2 == 0 { log } else { post_commit_log };
                                airlock::enqueue(effect(&log, id.to_string()))?;
                                tokio::task::yield_now().await;
                                if id % 3 == 0 {
                                    return Err(AppError::Refused);
                                }
                                Ok(())
                            })
                        })
                        .await;
                    assert_eq!(result.is_ok(), id % 3 != 0, "{result:?}");
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let committed: Vec<i64> = (0..64).filter(|id| id % 3 != 0).collect();
            assert_eq!(airlock_tests::order_ids!(&db.pool), committed);
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let expected_outbox = committed.iter().filter(|id| *id % 2 == 0).count();
            let start = Instant::now();
            while outbox.count(RowState::Done).await.unwrap() < expected_outbox as i64 {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the relay is stuck"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            relay.shutdown().await;
            let mut dispatched: Vec<i64> = runs(&log)
                .iter()
                .chain(runs(&post_commit_log).iter())
                .map(|label| label.parse().unwrap())
                .collect();
            dispatched.sort_unstable();
            assert_eq!(
                dispatched, committed,
                "each committed effect exactly once, no other"
            );
            db.finish().await;
        }

        #[tokio::test]
        async fn a_killed_process_leaves_its_committed_rows_to_the_next_relay() {
            use std::io::{BufRead, BufReader};
            let Some(db) = $setup else { return };
            let log = unique("log");
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outbox_child"))
                .args(db.child_args())
                .arg(&log)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            let mut said = Vec::new();
            for line in stdout.lines() {
                let line = line.unwrap();
                let dispatching = line == "DISPATCHING";
                said.push(line);
                if dispatching {
                    break;
                }
            }
            assert_eq!(
                said,
                ["COMMITTED", "DISPATCHING"],
                "the child did not get there"
            );
            child.kill().unwrap(); // SIGKILL, mid-dispatch
            child.wait().unwrap();

            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let relay = Relay::new(db.pool.clone(), InlineExecutor);
            relay_until(&relay, async || {
                outbox.count(RowState::Done).await.unwrap() == 3
            })
            .await;
            assert_eq!(runs(&log), ["c1", "c2", "c3"]);
            assert_eq!(outbox.count(RowState::Pending).await.unwrap(), 0);
            db.finish().await;
        }
    };
}

mod sqlite {
    outbox_scenarios!(
        Some(airlock_tests::sqlx_db::sqlite().await),
        "INSERT INTO airlock_outbox (task, payload, created_at, available_at) VALUES ($1, $2, 0, 0)"
    );
}

mod postgres {
    outbox_scenarios!(
        airlock_tests::sqlx_db::postgres().await,
        "INSERT INTO airlock_outbox (task, payload) VALUES ($1, $2::json)"
    );

    /// A commit in another process wakes the relay through NOTIFY: its
    /// polling interval is an hour.
    #[tokio::test]
    async fn notify_wakes_the_relay_at_a_commit_elsewhere() {
        let Some(db) = airlock_tests::sqlx_db::postgres().await else {
            return;
        };
        let log = unique("log");
        let relay = Relay::new(db.pool.clone(), InlineExecutor)
            .poll_interval(Duration::from_secs(3600))
            .spawn();
        // Time to LISTEN and to find nothing due.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_outbox_child"))
            .args(db.child_args())
            .arg(&log)
            .arg("--exit-after-commit")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
        let start = Instant::now();
        while outbox.count(RowState::Done).await.unwrap() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "NOTIFY did not wake the relay"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relay.shutdown().await;
        assert_eq!(runs(&log), ["c1", "c2", "c3"]);
        db.finish().await;
    }

    /// 10,000 intents, four relays with their own connections: each intent
    /// dispatched exactly once.
    #[tokio::test]
    async fn four_relays_dispatch_ten_thousand_intents_exactly_once() {
        let Some(db) = airlock_tests::sqlx_db::postgres().await else {
            return;
        };
        let log = unique("log");
        for chunk in 0..20 {
            let labels: Vec<String> = (0..500).map(|i| (chunk * 500 + i).to_string()).collect();
            commit_effects!(&db.pool, log, labels);
        }
        let mut relays = Vec::new();
        for _ in 0..4 {
            let pool = db.another_pool(2).await;
            relays.push(
                Relay::new(pool, InlineExecutor)
                    .batch_size(50)
                    .poll_interval(Duration::from_millis(20))
                    .spawn(),
            );
        }
        let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
        let start = Instant::now();
        while outbox.count(RowState::Done).await.unwrap() < 10_000 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the relays are stuck"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for relay in relays {
            relay.shutdown().await;
        }
        let runs = runs(&log);
        assert_eq!(runs.len(), 10_000, "some intents were dispatched twice");
        let mut unique_runs: Vec<u32> = runs.iter().map(|label| label.parse().unwrap()).collect();
        unique_runs.sort_unstable();
        unique_runs.dedup();
        assert_eq!(unique_runs.len(), 10_000);
        db.finish().await;
    }
}
