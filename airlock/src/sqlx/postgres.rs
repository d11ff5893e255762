//! PostgreSQL: UNNEST for one-statement inserts, `FOR UPDATE SKIP LOCKED`
//! claims, LISTEN/NOTIFY wake-ups.

use ::sqlx::postgres::{PgConnection, PgListener, PgRow};
use ::sqlx::{PgPool, Postgres, Row};

use super::backend::{BoxFut, migrator, sealed::Sealed};
use super::outbox::{Failure, NewRow, OutboxRow, RowState};

/// The channel relays LISTEN on; the insert notifies it, delivered at COMMIT.
const CHANNEL: &str = "airlock_outbox";

const COLUMNS: &str = "id, task, payload::text AS payload, options::text AS options, origin, \
                       attempts, max_attempts, last_error, state, created_at::text AS created_at";

const INSERT: &str = "WITH rows AS (
    INSERT INTO airlock_outbox (task, payload, options, origin, max_attempts, available_at)
    SELECT t, p::json, o::json, g, m, now() + d * interval '1 millisecond'
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::int8[])
        AS r(t, p, o, g, m, d)
    RETURNING 1)
SELECT pg_notify('airlock_outbox', count(*)::text) FROM rows";

fn row(row: &PgRow) -> Result<OutboxRow, ::sqlx::Error> {
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

fn rows(found: Vec<PgRow>) -> Result<Vec<OutboxRow>, ::sqlx::Error> {
    found.iter().map(row).collect()
}

// The sealed trait is pub only so `Backend` can name it; its row types stay private.
#[allow(private_interfaces)]
impl Sealed for Postgres {
    const BEGIN: Option<&'static str> = None;
    const LOCKS_ROWS: bool = true;

    type Listener = PgListener;

    fn migrate(pool: &PgPool) -> BoxFut<'_, Result<(), ::sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            migrator(include_str!("migrations/postgres/0001_airlock_outbox.sql"))
                .run(pool)
                .await
        })
    }

    fn insert<'a>(
        conn: &'a mut PgConnection,
        new: &'a [NewRow],
    ) -> BoxFut<'a, Result<(), ::sqlx::Error>> {
        Box::pin(async move {
            let mut tasks = Vec::with_capacity(new.len());
            let mut payloads = Vec::with_capacity(new.len());
            let mut options = Vec::with_capacity(new.len());
            let mut origins = Vec::with_capacity(new.len());
            let mut max_attempts = Vec::with_capacity(new.len());
            let mut delays = Vec::with_capacity(new.len());
            for row in new {
                tasks.push(row.task.as_str());
                payloads.push(row.payload.as_str());
                options.push(row.options.as_str());
                origins.push(row.origin.as_deref());
                max_attempts.push(row.max_attempts);
                delays.push(row.delay_ms);
            }
            ::sqlx::query(INSERT)
                .bind(tasks)
                .bind(payloads)
                .bind(options)
                .bind(origins)
                .bind(max_attempts)
                .bind(delays)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    fn claim(
        conn: &mut PgConnection,
        limit: i64,
        _lease_ms: i64,
    ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM airlock_outbox \
                 WHERE state = 'pending' AND available_at <= now() \
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
            );
            rows(
                ::sqlx::query(::sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(conn)
                    .await?,
            )
        })
    }

    fn settle<'a>(
        conn: &'a mut PgConnection,
        done: &'a [i64],
        failed: &'a [Failure],
        // Released with the round's row locks.
        _released: &'a [i64],
    ) -> BoxFut<'a, Result<(), ::sqlx::Error>> {
        Box::pin(async move {
            if !done.is_empty() {
                ::sqlx::query(
                    "UPDATE airlock_outbox SET state = 'done', attempts = attempts + 1, \
                     done_at = now(), last_error = NULL WHERE id = ANY($1)",
                )
                .bind(done)
                .execute(&mut *conn)
                .await?;
            }
            if !failed.is_empty() {
                let ids: Vec<i64> = failed.iter().map(|f| f.id).collect();
                let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
                let retry_ms: Vec<Option<i64>> = failed
                    .iter()
                    .map(|f| {
                        f.retry_in
                            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    })
                    .collect();
                ::sqlx::query(
                    "UPDATE airlock_outbox AS o SET attempts = o.attempts + 1, last_error = f.e, \
                     state = CASE WHEN f.r IS NULL THEN 'dead' ELSE 'pending' END, \
                     available_at = now() + coalesce(f.r, 0) * interval '1 millisecond' \
                     FROM UNNEST($1::int8[], $2::text[], $3::int8[]) AS f(id, e, r) \
                     WHERE o.id = f.id",
                )
                .bind(ids)
                .bind(errors)
                .bind(retry_ms)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    }

    fn list(
        pool: &PgPool,
        state: RowState,
        after: i64,
        limit: i64,
    ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM airlock_outbox WHERE state = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
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

    fn count(pool: &PgPool, state: RowState) -> BoxFut<'_, Result<i64, ::sqlx::Error>> {
        Box::pin(async move {
            ::sqlx::query_scalar("SELECT count(*) FROM airlock_outbox WHERE state = $1")
                .bind(state.as_str())
                .fetch_one(pool)
                .await
        })
    }

    fn replay<'a>(
        pool: &'a PgPool,
        ids: Option<&'a [i64]>,
    ) -> BoxFut<'a, Result<u64, ::sqlx::Error>> {
        Box::pin(async move {
            let result = ::sqlx::query(
                "WITH rows AS (UPDATE airlock_outbox SET state = 'pending', attempts = 0, \
                 available_at = now() WHERE state = 'dead' AND ($1::int8[] IS NULL OR id = ANY($1)) \
                 RETURNING 1) SELECT pg_notify('airlock_outbox', count(*)::text), count(*) FROM rows",
            )
            .bind(ids)
            .fetch_one(pool)
            .await?;
            let count: i64 = result.try_get(1)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn purge_done(pool: &PgPool, age_ms: i64) -> BoxFut<'_, Result<u64, ::sqlx::Error>> {
        Box::pin(async move {
            let result = ::sqlx::query(
                "DELETE FROM airlock_outbox WHERE state = 'done' \
                 AND done_at < now() - $1 * interval '1 millisecond'",
            )
            .bind(age_ms)
            .execute(pool)
            .await?;
            Ok(result.rows_affected())
        })
    }

    fn listen(pool: &PgPool) -> BoxFut<'_, Option<PgListener>> {
        Box::pin(async move {
            let mut listener = match PgListener::connect_with(pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(target: "airlock", %error, "outbox relay: LISTEN unavailable, polling only");
                    return None;
                }
            };
            match listener.listen(CHANNEL).await {
                Ok(()) => Some(listener),
                Err(error) => {
                    tracing::warn!(target: "airlock", %error, "outbox relay: LISTEN failed, polling only");
                    None
                }
            }
        })
    }

    fn notified(listener: &mut PgListener) -> BoxFut<'_, Result<(), ::sqlx::Error>> {
        Box::pin(async move { listener.recv().await.map(drop) })
    }
}
