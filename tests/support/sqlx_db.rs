//! Databases and registered tasks for the sqlx tests: a fresh SQLite file or
//! a fresh PostgreSQL schema per test, so tests run in parallel.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

/// Records `label` into the log named `log` (see [`runs`]). Registered, so
/// the relay can decode it.
#[airlock::task(name = "sqlx_test.effect")]
pub fn effect(log: String, label: String) {
    super::write(&log, label);
}

/// Fails its first `failures` runs (recording each), then succeeds.
#[airlock::task(name = "sqlx_test.flaky")]
pub fn flaky(log: String, label: String, failures: usize) -> Result<(), String> {
    let before = runs(&log).iter().filter(|run| **run == label).count();
    super::write(&log, label.clone());
    if before < failures {
        return Err(format!("transient failure {} of {failures}", before + 1));
    }
    Ok(())
}

/// Always fails with `permanent failure: <label>`, recording each run.
#[airlock::task(name = "sqlx_test.broken")]
pub fn broken(log: String, label: String) -> Result<(), String> {
    super::write(&log, label.clone());
    Err(format!("permanent failure: {label}"))
}

/// What was recorded in the log named `log`, in order.
pub fn runs(log: &str) -> Vec<String> {
    super::logs()
        .lock()
        .unwrap()
        .get(log)
        .cloned()
        .unwrap_or_default()
}

/// A name unique to this run: process, time and a counter.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    format!(
        "airlock_{what}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `AIRLOCK_TEST_POSTGRES_URL`, or the default; `None` when
/// `AIRLOCK_SKIP_SERVICES=1` asks to skip tests that need services.
pub fn postgres_url() -> Option<String> {
    if std::env::var("AIRLOCK_SKIP_SERVICES").is_ok_and(|v| v == "1") {
        eprintln!("AIRLOCK_SKIP_SERVICES=1: skipping a test that needs PostgreSQL");
        return None;
    }
    Some(
        std::env::var("AIRLOCK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
    )
}

/// A pool whose connections see `schema` first.
///
/// # Panics
///
/// When PostgreSQL does not answer, saying how to start it.
pub async fn pg_pool(url: &str, schema: &str, connections: u32) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|error| panic!("AIRLOCK_TEST_POSTGRES_URL={url} is not a URL: {error}"))
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {url} ({error}). Start PostgreSQL 15 there \
                 (`pg_ctlcluster 15 main start`, or `docker run -p 5432:5432 -e \
                 POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:15`), point \
                 AIRLOCK_TEST_POSTGRES_URL at one, or set AIRLOCK_SKIP_SERVICES=1 to skip"
            )
        })
}

/// A fresh PostgreSQL schema for one test, with the outbox migrated into it.
#[derive(Debug)]
pub struct PgSchema {
    /// Connections that see the schema first.
    pub pool: PgPool,
    /// The schema's name.
    pub schema: String,
    /// The server's URL.
    pub url: String,
}

impl PgSchema {
    /// Another pool on the same schema (a second relay, a second machine).
    pub async fn another_pool(&self, connections: u32) -> PgPool {
        pg_pool(&self.url, &self.schema, connections).await
    }

    /// Drops the schema.
    pub async fn drop_schema(self) {
        self.pool.close().await;
        let admin = pg_pool(&self.url, "public", 1).await;
        let drop = format!("DROP SCHEMA {} CASCADE", self.schema);
        sqlx::query(AssertSqlSafe(drop))
            .execute(&admin)
            .await
            .unwrap();
    }
}

/// A fresh schema with the outbox and an `orders (id BIGINT PRIMARY KEY)`
/// table; `None` when services are skipped.
pub async fn postgres() -> Option<PgSchema> {
    let url = postgres_url()?;
    let schema = unique("s");
    let admin = pg_pool(&url, "public", 1).await;
    let create = format!("CREATE SCHEMA {schema}");
    sqlx::query(AssertSqlSafe(create))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let pool = pg_pool(&url, &schema, 12).await;
    airlock::sqlx::migrate(&pool).await.unwrap();
    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    Some(PgSchema { pool, schema, url })
}

/// A pool on the SQLite file at `path` (WAL, waiting up to 30 s for locks).
pub async fn sqlite_pool(path: &std::path::Path, connections: u32) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .unwrap()
}

/// A fresh SQLite file for one test, deleted when dropped.
#[derive(Debug)]
pub struct SqliteFile {
    /// Connections to it.
    pub pool: SqlitePool,
    /// Where it is.
    pub path: PathBuf,
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A fresh SQLite file with the outbox and an `orders` table.
pub async fn sqlite() -> SqliteFile {
    let path = std::env::temp_dir().join(format!("{}.db", unique("sqlite")));
    let pool = sqlite_pool(&path, 4).await;
    airlock::sqlx::migrate(&pool).await.unwrap();
    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    SqliteFile { pool, path }
}

impl PgSchema {
    /// Ends the test: drops the schema.
    pub async fn finish(self) {
        self.drop_schema().await;
    }
}

impl SqliteFile {
    /// Ends the test: closes the pool (the file goes when this drops).
    pub async fn finish(self) {
        self.pool.close().await;
    }
}

/// A body's own error, next to the transaction's.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The transaction scope's error.
    #[error(transparent)]
    Tx(#[from] airlock::sqlx::TxError),
    /// The body refused to go on.
    #[error("refused")]
    Refused,
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        AppError::Tx(error.into())
    }
}

impl From<airlock::Error> for AppError {
    fn from(error: airlock::Error) -> Self {
        AppError::Tx(error.into())
    }
}

/// The order ids in `orders`, sorted.
#[macro_export]
macro_rules! order_ids {
    ($pool:expr) => {
        sqlx::query_scalar::<_, i64>("SELECT id FROM orders ORDER BY id")
            .fetch_all($pool)
            .await
            .unwrap()
    };
}

/// The transaction-scope tests, run against the database `$setup` makes
/// (an async expression giving `Option<db>`, `None` to skip).
#[macro_export]
macro_rules! transaction_scenarios {
    ($setup:expr) => {
        use airlock::sqlx::{TxError, TxScope};
        use airlock_tests::order_ids;
        use airlock_tests::sqlx_db::{AppError, Effect, runs, unique};

        fn effect(log: &str, label: &str) -> Effect {
            Effect {
                log: log.to_owned(),
                label: label.to_owned(),
            }
        }

        #[tokio::test]
        async fn commit_dispatches_once_and_only_after_commit() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let seen_inside = airlock::sqlx::transaction(&db.pool, |tx| {
                let log = log.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO orders (id) VALUES (1)")
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(effect(&log, "receipt"))?;
                    Ok::<_, TxError>(runs(&log))
                })
            })
            .await
            .unwrap();
            assert!(
                seen_inside.is_empty(),
                "dispatched before COMMIT: {seen_inside:?}"
            );
            assert_eq!(runs(&log), ["receipt"]);
            assert_eq!(order_ids!(&db.pool), [1]);
            db.finish().await;
        }

        #[tokio::test]
        async fn err_rolls_back_and_dispatches_nothing() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let result: Result<(), AppError> = airlock::sqlx::transaction(&db.pool, |tx| {
                let log = log.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO orders (id) VALUES (1)")
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(effect(&log, "receipt"))?;
                    Err(AppError::Refused)
                })
            })
            .await;
            assert!(matches!(result, Err(AppError::Refused)), "{result:?}");
            assert!(runs(&log).is_empty());
            assert!(order_ids!(&db.pool).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn panic_rolls_back_and_dispatches_nothing() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let pool = db.pool.clone();
            let body_log = log.clone();
            let joined = tokio::spawn(async move {
                airlock::sqlx::transaction(&pool, |tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO orders (id) VALUES (1)")
                            .execute(&mut **tx)
                            .await?;
                        airlock::enqueue(effect(&body_log, "receipt"))?;
                        if body_log.starts_with("airlock") {
                            panic!("the body panics");
                        }
                        Ok::<_, TxError>(())
                    })
                })
                .await
            })
            .await;
            assert!(joined.unwrap_err().is_panic());
            assert!(runs(&log).is_empty());
            assert!(order_ids!(&db.pool).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn dropped_future_rolls_back_and_dispatches_nothing() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let (entered, wait_entered) = tokio::sync::oneshot::channel();
            let transaction = airlock::sqlx::transaction(&db.pool, |tx| {
                let log = log.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO orders (id) VALUES (1)")
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(effect(&log, "receipt"))?;
                    entered.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<_, TxError>(())
                })
            });
            tokio::select! {
                _ = transaction => panic!("the body never ends"),
                _ = wait_entered => {} // the transaction future is dropped here
            }
            assert!(runs(&log).is_empty());
            assert!(order_ids!(&db.pool).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn savepoint_rollback_discards_only_its_own_intents() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            airlock::sqlx::transaction(&db.pool, |tx| {
                let log = log.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO orders (id) VALUES (1)")
                        .execute(&mut **tx)
                        .await?;
                    airlock::enqueue(effect(&log, "outer"))?;
                    let inner: Result<(), AppError> = airlock::sqlx::transaction(&mut **tx, |sp| {
                        let log = log.clone();
                        Box::pin(async move {
                            sqlx::query("INSERT INTO orders (id) VALUES (2)")
                                .execute(&mut **sp)
                                .await?;
                            airlock::enqueue(effect(&log, "rolled back"))?;
                            Err(AppError::Refused)
                        })
                    })
                    .await;
                    assert!(matches!(inner, Err(AppError::Refused)));
                    airlock::sqlx::transaction(&mut **tx, |sp| {
                        let log = log.clone();
                        Box::pin(async move {
                            sqlx::query("INSERT INTO orders (id) VALUES (3)")
                                .execute(&mut **sp)
                                .await?;
                            airlock::enqueue(effect(&log, "released"))?;
                            Ok::<_, AppError>(())
                        })
                    })
                    .await?;
                    assert!(
                        runs(&log).is_empty(),
                        "a released savepoint dispatched before COMMIT"
                    );
                    Ok::<_, AppError>(())
                })
            })
            .await
            .unwrap();
            assert_eq!(runs(&log), ["outer", "released"]);
            assert_eq!(order_ids!(&db.pool), [1, 3]);
            db.finish().await;
        }

        #[tokio::test]
        async fn released_savepoint_intents_die_with_the_outer_rollback() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let result: Result<(), AppError> = airlock::sqlx::transaction(&db.pool, |tx| {
                let log = log.clone();
                Box::pin(async move {
                    airlock::sqlx::transaction(&mut **tx, |_sp| {
                        let log = log.clone();
                        Box::pin(async move {
                            airlock::enqueue(effect(&log, "released"))?;
                            Ok::<_, AppError>(())
                        })
                    })
                    .await?;
                    Err(AppError::Refused)
                })
            })
            .await;
            assert!(result.is_err());
            assert!(runs(&log).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn plain_scope_inside_is_captured_until_commit() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            airlock::sqlx::transaction(&db.pool, |_tx| {
                let log = log.clone();
                Box::pin(async move {
                    airlock::scope_async(async { airlock::enqueue(effect(&log, "deep")) }).await?;
                    assert!(
                        runs(&log).is_empty(),
                        "a plain scope inside a transaction dispatched"
                    );
                    Ok::<_, TxError>(())
                })
            })
            .await
            .unwrap();
            assert_eq!(runs(&log), ["deep"]);
            db.finish().await;
        }

        #[tokio::test]
        async fn a_commit_is_not_undone_by_an_enclosing_scope_but_its_policy_counts() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let pool = &db.pool;
            let outer: Result<(), AppError> = airlock::scope_async(async {
                airlock::sqlx::transaction(pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(effect(&log, "committed"))?;
                        Ok::<_, AppError>(())
                    })
                })
                .await?;
                Err(AppError::Refused)
            })
            .await;
            assert!(outer.is_err());
            assert_eq!(
                runs(&log),
                ["committed"],
                "the COMMIT's effects were discarded"
            );

            let dry: Result<(), AppError> = airlock::Scope::new()
                .policy(airlock::DropAll)
                .run_async(async {
                    airlock::sqlx::transaction(pool, |_tx| {
                        let log = log.clone();
                        Box::pin(async move {
                            airlock::enqueue(effect(&log, "dry run"))?;
                            Ok::<_, AppError>(())
                        })
                    })
                    .await
                })
                .await;
            dry.unwrap();
            assert_eq!(
                runs(&log),
                ["committed"],
                "DropAll around the transaction was ignored"
            );
            db.finish().await;
        }

        #[tokio::test]
        async fn guard_commits_then_dispatches() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let pool = db.pool.clone();
            let task_log = log.clone();
            // Spawned: the guard's futures are Send.
            let before_commit = tokio::spawn(async move {
                let log = task_log;
                let mut tx = airlock::sqlx::begin(&pool).await.unwrap();
                sqlx::query("INSERT INTO orders (id) VALUES (1)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.scope(|sp| {
                    let log = log.clone();
                    Box::pin(async move {
                        sqlx::query("INSERT INTO orders (id) VALUES (2)")
                            .execute(&mut **sp)
                            .await?;
                        airlock::enqueue(effect(&log, "in scope"))?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
                let failed: Result<(), AppError> = tx
                    .scope(|sp| {
                        let log = log.clone();
                        Box::pin(async move {
                            sqlx::query("INSERT INTO orders (id) VALUES (3)")
                                .execute(&mut **sp)
                                .await?;
                            airlock::enqueue(effect(&log, "failed scope"))?;
                            Err(AppError::Refused)
                        })
                    })
                    .await;
                assert!(failed.is_err());
                tx.enqueue(effect(&log, "direct")).unwrap();
                assert_eq!(tx.intents().len(), 2);
                let before_commit = runs(&log);
                tx.commit().await.unwrap();
                before_commit
            })
            .await
            .unwrap();
            assert!(before_commit.is_empty(), "{before_commit:?}");
            assert_eq!(runs(&log), ["in scope", "direct"]);
            assert_eq!(order_ids!(&db.pool), [1, 2]);
            db.finish().await;
        }

        #[tokio::test]
        async fn guard_dropped_without_commit_rolls_back_and_discards() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            {
                let mut tx = airlock::sqlx::begin(&db.pool).await.unwrap();
                sqlx::query("INSERT INTO orders (id) VALUES (1)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.enqueue(effect(&log, "never")).unwrap();
            }
            let mut tx = airlock::sqlx::begin(&db.pool).await.unwrap();
            tx.enqueue(effect(&log, "also never")).unwrap();
            tx.rollback().await.unwrap();
            assert!(runs(&log).is_empty());
            assert!(order_ids!(&db.pool).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn capture_commit_shows_what_commit_would_dispatch() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let mut test_tx = db.pool.begin().await.unwrap();
            let (result, committed) = airlock::sqlx::capture_commit(async {
                airlock::sqlx::transaction(&mut *test_tx, |tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        sqlx::query("INSERT INTO orders (id) VALUES (1)")
                            .execute(&mut **tx)
                            .await?;
                        airlock::enqueue(effect(&log, "would run"))?;
                        Ok::<_, TxError>(())
                    })
                })
                .await?;
                let rolled_back: Result<(), AppError> =
                    airlock::sqlx::transaction(&mut *test_tx, |_tx| {
                        let log = log.clone();
                        Box::pin(async move {
                            airlock::enqueue(effect(&log, "rolled back"))?;
                            Err(AppError::Refused)
                        })
                    })
                    .await;
                assert!(rolled_back.is_err());
                Ok::<_, TxError>(())
            })
            .await;
            result.unwrap();
            let labels: Vec<&str> = committed
                .payloads::<Effect>()
                .iter()
                .map(|effect| effect.label.as_str())
                .collect();
            assert_eq!(labels, ["would run"]);
            assert_eq!(committed.names(), ["sqlx_test.effect"]);
            test_tx.rollback().await.unwrap();
            assert!(runs(&log).is_empty(), "capture_commit dispatched");
            assert!(order_ids!(&db.pool).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn a_transaction_airlock_does_not_own_is_refused() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            let mut raw = db.pool.begin().await.unwrap();
            let result: Result<(), TxError> = airlock::sqlx::transaction(&mut *raw, |_tx| {
                let log = log.clone();
                Box::pin(async move {
                    airlock::enqueue(effect(&log, "early"))?;
                    Ok(())
                })
            })
            .await;
            let error = result.unwrap_err();
            assert!(matches!(error, TxError::NotOwned), "{error:?}");
            assert!(error.to_string().contains("airlock::sqlx::transaction"));
            assert!(matches!(
                TxScope::new().begin(&mut *raw).await,
                Err(TxError::NotOwned)
            ));
            raw.rollback().await.unwrap();
            assert!(runs(&log).is_empty());
            db.finish().await;
        }

        #[tokio::test]
        async fn dispatch_failure_after_commit_goes_to_the_undelivered_hook() {
            use std::sync::{Arc, Mutex};
            let Some(db) = $setup else { return };
            let log = unique("log");
            let lost = Arc::new(Mutex::new(Vec::new()));
            let sink = lost.clone();
            let defaults =
                airlock::Defaults::new().on_undelivered(move |u: airlock::Undelivered| {
                    let error = u.error().map(ToString::to_string).unwrap_or_default();
                    let mut sink = sink.lock().unwrap();
                    sink.push(u.cause().to_owned());
                    sink.push(error);
                    sink.extend(u.intents().iter().map(|intent| {
                        intent.to_json().unwrap()["label"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    }));
                });
            let pool = &db.pool;
            airlock::with_defaults_async(defaults, async {
                airlock::sqlx::transaction(pool, |tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        sqlx::query("INSERT INTO orders (id) VALUES (1)")
                            .execute(&mut **tx)
                            .await?;
                        airlock::enqueue(airlock_tests::sqlx_db::Broken {
                            log: log.clone(),
                            label: "broken".into(),
                        })?;
                        airlock::enqueue(effect(&log, "after"))?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
            })
            .await
            .unwrap();
            assert_eq!(order_ids!(&db.pool), [1], "the COMMIT stands");
            assert_eq!(runs(&log), ["broken"]);
            let lost = lost.lock().unwrap().clone();
            assert_eq!(lost[0], "dispatch after COMMIT failed");
            assert!(lost[1].contains("permanent failure: broken"), "{lost:?}");
            assert_eq!(lost[2..], ["broken", "after"], "{lost:?}");
            db.finish().await;
        }

        #[tokio::test]
        async fn dispatch_failure_after_commit_goes_to_the_fallback_outbox() {
            let Some(db) = $setup else { return };
            let log = unique("log");
            TxScope::new()
                .fallback_outbox(db.pool.clone())
                .run(&db.pool, |_tx| {
                    let log = log.clone();
                    Box::pin(async move {
                        airlock::enqueue(airlock_tests::sqlx_db::Broken {
                            log: log.clone(),
                            label: "broken".into(),
                        })?;
                        airlock::enqueue(effect(&log, "after"))?;
                        Ok::<_, TxError>(())
                    })
                })
                .await
                .unwrap();
            let outbox = airlock::sqlx::Outbox::new(db.pool.clone());
            let pending = outbox
                .list(airlock::sqlx::RowState::Pending, 0, 10)
                .await
                .unwrap();
            let tasks: Vec<&str> = pending.iter().map(|row| row.task.as_str()).collect();
            assert_eq!(
                tasks,
                ["sqlx_test.broken", "sqlx_test.effect"],
                "{pending:?}"
            );
            assert!(pending[1].payload.contains("after"));
            db.finish().await;
        }
    };
}

impl PgSchema {
    /// The arguments `outbox_child` needs to reach this schema.
    pub fn child_args(&self) -> Vec<String> {
        vec!["postgres".into(), self.url.clone(), self.schema.clone()]
    }
}

impl SqliteFile {
    /// The arguments `outbox_child` needs to reach this file.
    pub fn child_args(&self) -> Vec<String> {
        vec!["sqlite".into(), self.path.display().to_string()]
    }
}
