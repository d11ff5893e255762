//! SQLite: multi-row VALUES inserts, `BEGIN IMMEDIATE`, times in Unix
//! milliseconds. SQLite has one write lock and no row locks, so the relay
//! leases the rows it claims (pushes `available_at` out) in a short
//! transaction and dispatches outside it: tasks that write to the same
//! database do not wait for the relay.

use std::time::{SystemTime, UNIX_EPOCH};

use ::sqlx::sqlite::{SqliteConnection, SqliteRow};
use ::sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::backend::{BoxFut, migrator, sealed::Sealed};
use super::outbox::{Failure, NewRow, OutboxRow, RowState};

const COLUMNS: &str = "id, task, payload, options, origin, attempts, max_attempts, last_error, \
                       state, strftime('%Y-%m-%d %H:%M:%f', created_at / 1000.0, 'unixepoch') \
                       AS created_at";

/// SQLite's default limit on bound parameters is 32766; six per row.
const ROWS_PER_STATEMENT: usize = 5000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn row(row: &SqliteRow) -> Result<OutboxRow, ::sqlx::Error> {
    Ok(OutboxRow {
        id: row.try_get("id")?,
        task: row.try_get("task")?,
        payload: row.try_get("payload")?,
        options: row.try_get("options")?,
        origin: row.try_get("origin")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        last_error: row.try_get("last_error")?,
        state: RowState::parse(row.try_get("state")?),
        created_at: row.try_get("created_at")?,
    })
}

fn rows(found: Vec<SqliteRow>) -> Result<Vec<OutboxRow>, ::sqlx::Error> {
    found.iter().map(row).collect()
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::Value::from(ids).to_string()
}

// The sealed trait is pub only so `Backend` can name it; its row types stay private.
#[allow(private_interfaces)]
impl Sealed for Sqlite {
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const LOCKS_ROWS: bool = false;

    type Listener = std::convert::Infallible;

    fn migrate(pool: &SqlitePool) -> BoxFut<'_, Result<(), ::sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            migrator(include_str!("migrations/sqlite/0001_airlock_outbox.sql"))
                .run(pool)
                .await
        })
    }

    fn insert<'a>(
        conn: &'a mut SqliteConnection,
        new: &'a [NewRow],
    ) -> BoxFut<'a, Result<(), ::sqlx::Error>> {
        Box::pin(async move {
            let now = now_ms();
            for chunk in new.chunks(ROWS_PER_STATEMENT) {
                let mut insert = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO airlock_outbox \
                     (task, payload, options, origin, max_attempts, created_at, available_at) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(row.task.as_str())
                        .push_bind(row.payload.as_str())
                        .push_bind(row.options.as_str())
                        .push_bind(row.origin.as_deref())
                        .push_bind(row.max_attempts)
                        .push_bind(now)
                        .push_bind(now.saturating_add(row.delay_ms));
                });
                insert.build().execute(&mut *conn).await?;
            }
            Ok(())
        })
    }

    fn claim(
        conn: &mut SqliteConnection,
        limit: i64,
        lease_ms: i64,
    ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>> {
        Box::pin(async move {
            let now = now_ms();
            let sql = format!(
                "SELECT {COLUMNS} FROM airlock_outbox \
                 WHERE state = 'pending' AND available_at <= ?1 ORDER BY id LIMIT ?2"
            );
            let claimed = rows(
                ::sqlx::query(::sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?,
            )?;
            if !claimed.is_empty() {
                let ids: Vec<i64> = claimed.iter().map(|row| row.id).collect();
                ::sqlx::query(
                    "UPDATE airlock_outbox SET available_at = ?1 \
                     WHERE id IN (SELECT value FROM json_each(?2))",
                )
                .bind(now.saturating_add(lease_ms))
                .bind(ids_json(&ids))
                .execute(&mut *conn)
                .await?;
            }
            Ok(claimed)
        })
    }

    fn settle<'a>(
        conn: &'a mut SqliteConnection,
        done: &'a [i64],
        failed: &'a [Failure],
        released: &'a [i64],
    ) -> BoxFut<'a, Result<(), ::sqlx::Error>> {
        Box::pin(async move {
            let now = now_ms();
            if !released.is_empty() {
                ::sqlx::query(
                    "UPDATE airlock_outbox SET available_at = ?1 \
                     WHERE id IN (SELECT value FROM json_each(?2))",
                )
                .bind(now)
                .bind(ids_json(released))
                .execute(&mut *conn)
                .await?;
            }
            if !done.is_empty() {
                ::sqlx::query(
                    "UPDATE airlock_outbox SET state = 'done', attempts = attempts + 1, \
                     done_at = ?1, last_error = NULL \
                     WHERE id IN (SELECT value FROM json_each(?2))",
                )
                .bind(now)
                .bind(ids_json(done))
                .execute(&mut *conn)
                .await?;
            }
            for failure in failed {
                let retry_ms = failure
                    .retry_in
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                ::sqlx::query(
                    "UPDATE airlock_outbox SET attempts = attempts + 1, last_error = ?1, \
                     state = CASE WHEN ?2 IS NULL THEN 'dead' ELSE 'pending' END, \
                     available_at = ?3 + coalesce(?2, 0) WHERE id = ?4",
                )
                .bind(failure.error.as_str())
                .bind(retry_ms)
                .bind(now)
                .bind(failure.id)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    }

    fn list(
        pool: &SqlitePool,
        state: RowState,
        after: i64,
        limit: i64,
    ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM airlock_outbox WHERE state = ?1 AND id > ?2 \
                 ORDER BY id LIMIT ?3"
            );
            rows(
                ::sqlx::query(::sqlx::AssertSqlSafe(sql))
                    .bind(state.as_str())
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    fn count(pool: &SqlitePool, state: RowState) -> BoxFut<'_, Result<i64, ::sqlx::Error>> {
        Box::pin(async move {
            ::sqlx::query_scalar("SELECT count(*) FROM airlock_outbox WHERE state = ?1")
                .bind(state.as_str())
                .fetch_one(pool)
                .await
        })
    }

    fn replay<'a>(
        pool: &'a SqlitePool,
        ids: Option<&'a [i64]>,
    ) -> BoxFut<'a, Result<u64, ::sqlx::Error>> {
        Box::pin(async move {
            let result = ::sqlx::query(
                "UPDATE airlock_outbox SET state = 'pending', attempts = 0, available_at = ?1 \
                 WHERE state = 'dead' AND (?2 IS NULL OR id IN (SELECT value FROM json_each(?2)))",
            )
            .bind(now_ms())
            .bind(ids.map(ids_json))
            .execute(pool)
            .await?;
            Ok(result.rows_affected())
        })
    }

    fn purge_done(pool: &SqlitePool, age_ms: i64) -> BoxFut<'_, Result<u64, ::sqlx::Error>> {
        Box::pin(async move {
            let result =
                ::sqlx::query("DELETE FROM airlock_outbox WHERE state = 'done' AND done_at < ?1")
                    .bind(now_ms().saturating_sub(age_ms))
                    .execute(pool)
                    .await?;
            Ok(result.rows_affected())
        })
    }

    fn listen(_: &SqlitePool) -> BoxFut<'_, Option<Self::Listener>> {
        // Writers in this process wake the relay directly; others are polled.
        Box::pin(async { None })
    }

    fn notified(listener: &mut Self::Listener) -> BoxFut<'_, Result<(), ::sqlx::Error>> {
        match *listener {}
    }
}
