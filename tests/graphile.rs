//! graphile_worker on Postgres: the executor adds each flush as jobs in one
//! statement, the worker runs them as tasks in their own scopes. Real
//! Postgres (`AIRLOCK_TEST_POSTGRES_URL`), one graphile schema per test.

use std::time::Duration;

use airlock::graphile::{GraphileExecutor, Worker};
use airlock::{DispatchOptions, Intent, PortablePolicy, Scope};
use airlock_tests::services::{postgres_url, unique};
use sqlx::PgPool;

#[path = "queue_tasks.rs"]
mod queue_tasks;
use queue_tasks::{AlwaysFails, Note, NoteThenFollowUp, note_run, runs};

/// The effect a reprocessing must not have.
#[airlock::task]
fn send_email(run: String) {
    note_run(&run, "email");
}

/// Reprocesses an order: emails (blockable) and writes an audit note.
#[airlock::task]
fn reprocess(run: String) -> airlock::Result<()> {
    note_run(&run, "reprocess");
    airlock::enqueue(SendEmail { run: run.clone() })?;
    airlock::enqueue(Note {
        run,
        label: "audit".into(),
    })
}

/// A pool on the test database and a freshly migrated graphile schema.
async fn setup(what: &str) -> Option<(PgPool, String)> {
    let url = postgres_url()?;
    let pool = PgPool::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to Postgres at {url}: {error}"));
    let schema = unique(what);
    graphile_worker::WorkerUtils::new(pool.clone(), schema.as_str())
        .migrate()
        .await
        .expect("graphile's schema migrates");
    Some((pool, schema))
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    let sql = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

fn worker(pool: &PgPool, schema: &str) -> Worker {
    Worker::new(pool.clone())
        .schema(schema)
        .task::<Note>()
        .task::<NoteThenFollowUp>()
        .task::<AlwaysFails>()
        .task::<SendEmail>()
        .task::<Reprocess>()
        .options(|options| options.poll_interval(Duration::from_millis(100)))
}

/// Runs `worker` while `body` runs, then stops it and waits for it.
async fn with_worker<F: Future<Output = ()>>(worker: Worker, body: F) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = worker.run_until(async move {
        let _ = stopped.await;
    });
    let body = async move {
        body.await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(worker, body);
    result.expect("the worker runs");
}

async fn eventually(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Row = (
    String,
    serde_json::Value,
    i16,
    i16,
    i16,
    Option<String>,
    Option<String>,
    f64,
);

/// identifier, payload, max_attempts, priority, attempts, key, last_error,
/// seconds until run_at.
async fn jobs(pool: &PgPool, schema: &str) -> Vec<Row> {
    let sql = format!(
        "SELECT t.identifier, j.payload, j.max_attempts, j.priority, j.attempts, j.key, \
         j.last_error, extract(epoch FROM j.run_at - now())::float8 \
         FROM \"{schema}\"._private_jobs j JOIN \"{schema}\"._private_tasks t ON t.id = j.task_id \
         ORDER BY j.id"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_flush_of_1000_intents_is_one_statement_and_lands_1000_jobs_with_their_options() {
    let Some((pool, schema)) = setup("flush").await else {
        return;
    };
    let executor = GraphileExecutor::new(pool.clone()).schema(schema.as_str());
    let run = unique("run");
    let mut scope = Scope::new().executor(executor).enter().unwrap();
    for i in 0..1000 {
        let mut options = DispatchOptions::new()
            .max_attempts(7)
            .priority(3)
            .queue("mail");
        if i % 2 == 0 {
            options = options.delay(Duration::from_secs(3600));
        }
        if i == 1 {
            options = options.extra("job_key", "the-one").priority(1_000_000);
        }
        let note = Note {
            run: run.clone(),
            label: i.to_string(),
        };
        airlock::enqueue(Intent::new(note).with_options(options)).unwrap();
    }
    scope.exit().unwrap();
    let report = scope.flush_async().await.unwrap();
    assert_eq!(report.receipts().len(), 1000);

    // One statement: every row was written by one transaction.
    let sql = format!("SELECT count(DISTINCT xmin::text) FROM \"{schema}\"._private_jobs");
    let (transactions,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(transactions, 1);

    let rows = jobs(&pool, &schema).await;
    assert_eq!(rows.len(), 1000);
    for (i, (identifier, payload, max_attempts, priority, _, key, _, wait)) in
        rows.iter().enumerate()
    {
        assert_eq!(identifier, "note");
        assert_eq!(
            payload["label"],
            i.to_string(),
            "payload as is, in flush order"
        );
        assert_eq!(
            payload.as_object().unwrap().len(),
            2,
            "nothing added to the payload"
        );
        assert_eq!(*max_attempts, 7);
        let expected_priority = if i == 1 { i16::MIN } else { -3 };
        assert_eq!(
            *priority, expected_priority,
            "higher airlock priority = lower graphile"
        );
        assert_eq!(key.as_deref(), (i == 1).then_some("the-one"));
        if i % 2 == 0 {
            assert!((3500.0..=3600.0).contains(wait), "delayed: {wait}");
        } else {
            assert!(*wait <= 1.0, "not delayed: {wait}");
        }
    }
    // `queue` is not graphile's serial `queue_name` unless asked.
    let sql =
        format!("SELECT count(*) FROM \"{schema}\"._private_jobs WHERE job_queue_id IS NOT NULL");
    let (serial,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(serial, 0);
    let ids: Vec<i64> = report
        .receipts()
        .iter()
        .map(|r| r.job_id.parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "receipts in flush order"
    );
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn queue_becomes_queue_name_only_when_asked() {
    let Some((pool, schema)) = setup("queue_name").await else {
        return;
    };
    let executor = GraphileExecutor::new(pool.clone())
        .schema(schema.as_str())
        .queue_as_queue_name();
    let note = Note {
        run: "x".into(),
        label: "y".into(),
    };
    let receipts = executor
        .add(vec![
            Intent::new(note).with_options(DispatchOptions::new().queue("serial")),
        ])
        .await
        .unwrap();
    assert_eq!(receipts[0].queue, "serial");
    let sql = format!(
        "SELECT q.queue_name FROM \"{schema}\"._private_jobs j \
         JOIN \"{schema}\"._private_job_queues q ON q.id = j.job_queue_id"
    );
    let (queue,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queue, "serial");
    drop_schema(&pool, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_each_job_once_dispatches_follow_ups_and_retries_up_to_max_attempts() {
    let Some((pool, schema)) = setup("e2e").await else {
        return;
    };
    let executor = GraphileExecutor::new(pool.clone()).schema(schema.as_str());
    let run = unique("run");
    let failing_run = format!("{run}-failing");

    let mut scope = Scope::new().executor(executor.clone()).enter().unwrap();
    for label in ["one", "two", "three"] {
        airlock::enqueue(Note {
            run: run.clone(),
            label: label.into(),
        })
        .unwrap();
    }
    airlock::enqueue(NoteThenFollowUp {
        run: run.clone(),
        label: "parent".into(),
    })
    .unwrap();
    let failing = AlwaysFails {
        run: failing_run.clone(),
    };
    airlock::enqueue(Intent::new(failing).with_options(DispatchOptions::new().max_attempts(2)))
        .unwrap();
    scope.exit().unwrap();
    scope.flush_async().await.unwrap();

    with_worker(worker(&pool, &schema).executor(executor), async {
        eventually(30, "the jobs and the follow-up", || runs(&run).len() == 5).await;
        eventually(30, "two attempts", || runs(&failing_run).len() >= 2).await;
        // graphile's next retry would come after e^2 s: none may come.
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;

    let mut ran = runs(&run);
    ran.sort();
    assert_eq!(ran, ["one", "parent", "parent+follow-up", "three", "two"]);
    assert_eq!(runs(&failing_run), ["attempt", "attempt"]);
    let rows = jobs(&pool, &schema).await;
    let failed: Vec<_> = rows.iter().filter(|row| row.0 == "always_fails").collect();
    assert_eq!(failed.len(), 1);
    let (_, _, max_attempts, _, attempts, _, last_error, _) = failed[0];
    assert_eq!((*attempts, *max_attempts), (2, 2));
    let last_error = last_error.as_deref().unwrap();
    assert!(last_error.contains("always_fails"), "{last_error}");
    assert!(
        last_error.contains("the mail server said no"),
        "{last_error}"
    );
    assert_eq!(
        rows.len(),
        1,
        "completed jobs are deleted, the failed one stays"
    );
    drop_schema(&pool, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_fail_permanently_with_a_clear_error_and_the_worker_goes_on() {
    let Some((pool, schema)) = setup("bad").await else {
        return;
    };
    let utils = graphile_worker::WorkerUtils::new(pool.clone(), schema.as_str());
    let run = unique("run");
    let spec = graphile_worker::JobSpec::default;
    utils
        .add_raw_job("note", serde_json::json!({"run": 5, "label": "x"}), spec())
        .await
        .unwrap();
    let huge = "x".repeat(10 * 1024 * 1024);
    utils
        .add_raw_job(
            "note",
            serde_json::json!({"run": run, "label": huge}),
            spec(),
        )
        .await
        .unwrap();
    utils
        .add_raw_job("no_such_task", serde_json::json!({}), spec())
        .await
        .unwrap();
    utils
        .add_raw_job(
            "note",
            serde_json::json!({"run": run, "label": "good"}),
            spec(),
        )
        .await
        .unwrap();

    let startup = worker(&pool, &schema).check().await.unwrap();
    assert_eq!(
        startup.unknown,
        ["no_such_task"],
        "unhandled identifiers are reported"
    );

    with_worker(worker(&pool, &schema), async {
        eventually(30, "the good job", || {
            runs(&run).contains(&"good".to_owned())
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let failed = jobs(&pool, &schema)
                .await
                .iter()
                .filter(|row| row.6.is_some())
                .count();
            if failed == 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "2 failed jobs, found {failed}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let rows = jobs(&pool, &schema).await;
    let errors: Vec<_> = rows
        .iter()
        .filter_map(|row| Some((row.6.as_deref()?, row.4, row.2)))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let (wrong_type, attempts, max) = errors[0];
    assert!(
        wrong_type.contains("payload for task `note` does not match"),
        "{wrong_type}"
    );
    assert!(
        wrong_type.contains("invalid type: integer `5`"),
        "{wrong_type}"
    );
    assert_eq!(attempts, max, "a permanent failure is not retried");
    let (too_big, attempts, max) = errors[1];
    assert!(too_big.contains("task `note`") && too_big.contains("over this worker's limit"));
    assert_eq!(attempts, max);
    // The unknown identifier waits, untouched, for a worker that handles it.
    let unknown: Vec<_> = rows.iter().filter(|row| row.0 == "no_such_task").collect();
    assert_eq!(unknown[0].4, 0);
    drop_schema(&pool, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portable_block_tasks_policy_travels_with_the_job_and_its_follow_ups() {
    let Some((pool, schema)) = setup("policy").await else {
        return;
    };
    let executor = GraphileExecutor::new(pool.clone()).schema(schema.as_str());
    let run = unique("run");
    let no_email = PortablePolicy::block_tasks(["send_email"]);

    Scope::new()
        .policy(no_email.clone())
        .executor(executor.clone())
        .run_async(async { airlock::enqueue(Reprocess { run: run.clone() }) })
        .await
        .unwrap();
    let queued = jobs(&pool, &schema).await;
    assert_eq!(
        queued[0].1[airlock::graphile::POLICY_KEY],
        serde_json::to_value(&no_email).unwrap()
    );

    // Keep the follow-ups in the table to look at them: a worker that only
    // runs `reprocess`.
    let only_reprocess = Worker::new(pool.clone())
        .schema(schema.as_str())
        .task::<Reprocess>()
        .executor(executor)
        .options(|options| options.poll_interval(Duration::from_millis(100)));
    with_worker(only_reprocess, async {
        eventually(30, "the reprocessing", || runs(&run) == ["reprocess"]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while jobs(&pool, &schema)
            .await
            .iter()
            .any(|row| row.0 == "reprocess")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reprocess completes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let queued = jobs(&pool, &schema).await;
    let tasks: Vec<_> = queued.iter().map(|row| row.0.as_str()).collect();
    assert_eq!(tasks, ["note"], "the blocked email never reached the queue");
    assert_eq!(
        queued[0].1[airlock::graphile::POLICY_KEY],
        serde_json::to_value(&no_email).unwrap(),
        "the follow-up carries the policy on"
    );
    with_worker(worker(&pool, &schema), async {
        eventually(30, "the audit note", || {
            runs(&run).contains(&"audit".to_owned())
        })
        .await;
    })
    .await;
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn a_flush_without_a_database_hands_back_every_intent() {
    let Some((pool, schema)) = setup("fault").await else {
        return;
    };
    let closed = PgPool::connect_lazy_with(pool.connect_options().as_ref().clone());
    closed.close().await;
    let executor = GraphileExecutor::new(closed).schema(schema.as_str());
    let error = Scope::new()
        .executor(executor)
        .run_async(async {
            for label in ["a", "b", "c"] {
                airlock::enqueue(Note {
                    run: "fault".into(),
                    label: label.into(),
                })?;
            }
            Ok::<(), airlock::Error>(())
        })
        .await
        .unwrap_err();
    let source = std::error::Error::source(&error).map(ToString::to_string);
    let message = source.unwrap_or_default();
    assert!(
        message.contains("graphile_worker did not add the 3 job(s)"),
        "{message}"
    );
    assert_eq!(error.into_undispatched().len(), 3);
    assert!(jobs(&pool, &schema).await.is_empty());
    drop_schema(&pool, &schema).await;
}

/// Job-queue mode of a transaction scope: `TxScope::graphile`.
#[cfg(feature = "sqlx")]
mod in_a_transaction {
    use super::*;
    use airlock::sqlx::{TxError, TxScope};

    async fn orders(pool: &PgPool, schema: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{schema}\".orders");
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .unwrap();
        count
    }

    /// Inserts an order and enqueues a note in one transaction scope that
    /// adds its jobs through the transaction; `fail` makes the body err
    /// after both.
    async fn checkout(pool: &PgPool, schema: &str, run: &str, fail: bool) -> Result<(), TxError> {
        let sql = format!("CREATE TABLE IF NOT EXISTS \"{schema}\".orders (id serial)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
        let executor = GraphileExecutor::new(pool.clone()).schema(schema);
        let insert = format!("INSERT INTO \"{schema}\".orders DEFAULT VALUES");
        let run = run.to_owned();
        TxScope::new()
            .graphile(executor)
            .run(pool, |tx| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(insert))
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(Note {
                        run,
                        label: "order".into(),
                    })?;
                    if fail {
                        return Err(TxError::Database(sqlx::Error::RowNotFound));
                    }
                    Ok(())
                })
            })
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graphile_job_enqueued_in_a_transaction_that_commits_runs_once() {
        let Some((pool, schema)) = setup("tx_commit").await else {
            return;
        };
        let run = unique("run");
        checkout(&pool, &schema, &run, false).await.unwrap();

        // The job committed with the order, in the same transaction.
        assert_eq!(orders(&pool, &schema).await, 1);
        let sql = format!(
            "SELECT (SELECT xmin::text FROM \"{schema}\".orders) = \
             (SELECT xmin::text FROM \"{schema}\"._private_jobs)"
        );
        let (same,): (bool,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(same, "the job was written by the order's transaction");
        let rows = jobs(&pool, &schema).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "note");
        assert_eq!(runs(&run), Vec::<String>::new(), "nothing ran at COMMIT");

        with_worker(worker(&pool, &schema), async {
            eventually(30, "the job", || !runs(&run).is_empty()).await;
            // Time for a second run, which must not come.
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
        assert_eq!(runs(&run), ["order"]);
        assert!(jobs(&pool, &schema).await.is_empty(), "the job completed");
        drop_schema(&pool, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graphile_job_enqueued_in_a_transaction_that_rolls_back_never_runs() {
        let Some((pool, schema)) = setup("tx_rollback").await else {
            return;
        };
        let run = unique("run");
        let error = checkout(&pool, &schema, &run, true).await.unwrap_err();
        assert!(matches!(error, TxError::Database(_)), "{error}");

        assert_eq!(orders(&pool, &schema).await, 0);
        assert!(jobs(&pool, &schema).await.is_empty(), "no job row");
        with_worker(worker(&pool, &schema), async {
            // Several polls of the worker: nothing may run.
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
        assert_eq!(runs(&run), Vec::<String>::new());
        drop_schema(&pool, &schema).await;
    }

    #[tokio::test]
    async fn jobs_that_cannot_be_added_roll_the_transaction_back() {
        let Some((pool, schema)) = setup("tx_no_schema").await else {
            return;
        };
        let run = unique("run");
        let sql = format!("CREATE TABLE \"{schema}\".orders (id serial)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        // graphile is migrated in `schema`, not in this one.
        let executor = GraphileExecutor::new(pool.clone()).schema(unique("missing"));
        let insert = format!("INSERT INTO \"{schema}\".orders DEFAULT VALUES");
        let error = TxScope::new()
            .graphile(executor)
            .run(&pool, |tx| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(insert))
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(Note {
                        run,
                        label: "order".into(),
                    })?;
                    Ok::<_, TxError>(())
                })
            })
            .await
            .unwrap_err();
        let TxError::Jobs { count, source } = &error else {
            panic!("expected TxError::Jobs, got {error:?}");
        };
        assert_eq!(*count, 1);
        assert!(source.to_string().contains("is it migrated"), "{source}");
        assert!(error.to_string().contains("rolled back"), "{error}");
        assert_eq!(orders(&pool, &schema).await, 0, "the order rolled back");
        drop_schema(&pool, &schema).await;
    }
}
