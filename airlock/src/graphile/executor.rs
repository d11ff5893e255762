//! The executor: a flush becomes one `add_jobs` statement.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::{Dispatch, DispatchFailure, Executor, Intent, Intents, Receipt};

/// The payload key that carries a [`PortablePolicy`](crate::PortablePolicy)
/// with a graphile job (added to object payloads only when a policy travels;
/// the worker removes it before decoding).
pub const POLICY_KEY: &str = "__airlock_policy";

/// Adds each flush as graphile_worker jobs, in one SQL statement: graphile's
/// own `add_jobs` function, as
/// [`WorkerUtils::add_raw_jobs`](graphile_worker::WorkerUtils::add_raw_jobs)
/// calls it.
///
/// | airlock | graphile_worker |
/// |---|---|
/// | task name ([`Task::NAME`](crate::Task::NAME)) | `identifier` |
/// | payload | `payload`, as is (plus [`POLICY_KEY`] when a portable policy travels) |
/// | `delay` | `run_at` = now + delay |
/// | `max_attempts` | `max_attempts`, clamped to `1..=32767` |
/// | `priority` (higher first, `i32`) | `priority` = `-priority` clamped to `i16` (graphile runs *lower* first) |
/// | extra `job_key` (a string) | `job_key` (graphile replaces a pending job with the same key) |
/// | extra `queue_name` (a string) | `queue_name` |
/// | `queue` | **not mapped** (in graphile a named queue runs its jobs one at a time), unless [`queue_as_queue_name`](Self::queue_as_queue_name) |
///
/// A statement that fails hands every intent of the flush back (the
/// statement is atomic: none was added). Each added job gets a
/// [`Receipt`] with graphile's job id in the flush's
/// [`FlushReport`](crate::FlushReport).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use airlock::graphile::GraphileExecutor;
///
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?;
/// let executor = GraphileExecutor::new(pool);
/// airlock::Scope::new()
///     .executor(executor)
///     .run_async(async { /* airlock::enqueue(...) */ Ok::<(), airlock::Error>(()) })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct GraphileExecutor {
    pool: PgPool,
    schema: String,
    queue_as_queue_name: bool,
    sql: String,
}

impl GraphileExecutor {
    /// Adds jobs through `pool`, in graphile's default schema
    /// `graphile_worker`.
    pub fn new(pool: PgPool) -> Self {
        GraphileExecutor {
            pool,
            schema: String::new(),
            queue_as_queue_name: false,
            sql: String::new(),
        }
        .schema("graphile_worker")
    }

    /// The schema graphile_worker lives in (as `WorkerOptions::schema`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        let schema = quote_ident(&self.schema);
        self.sql = format!(
            "SELECT id, key FROM {schema}.add_jobs(array(SELECT json_populate_recordset(\
             null::{schema}.job_spec, $1::json)), false)"
        );
        self
    }

    /// Maps each intent's `queue` option to graphile's `queue_name`: jobs of
    /// one named queue then run one at a time, in order.
    pub fn queue_as_queue_name(mut self) -> Self {
        self.queue_as_queue_name = true;
        self
    }

    /// The job specs for `intents`, as graphile's `add_jobs` reads them.
    fn specs(&self, intents: &[Intent]) -> Result<Vec<Spec>, (usize, serde_json::Error)> {
        let now = chrono::Utc::now();
        intents
            .iter()
            .enumerate()
            .map(|(index, intent)| self.spec(intent, now).map_err(|error| (index, error)))
            .collect()
    }

    fn spec(
        &self,
        intent: &Intent,
        now: chrono::DateTime<chrono::Utc>,
    ) -> serde_json::Result<Spec> {
        let options = intent.options();
        let mut payload = intent.to_json()?;
        if let (Some(policy), serde_json::Value::Object(fields)) =
            (crate::portable_policy_of(intent), &mut payload)
        {
            fields.insert(POLICY_KEY.to_owned(), serde_json::to_value(policy)?);
        }
        let extra = |key: &str| {
            options
                .extras
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let queue_name = extra("queue_name").or_else(|| {
            self.queue_as_queue_name
                .then(|| options.queue.as_deref().map(str::to_owned))
                .flatten()
        });
        Ok(Spec {
            identifier: intent.name(),
            payload,
            queue_name,
            run_at: options.delay.map(|delay| now + delay_to_chrono(delay)),
            max_attempts: options.max_attempts.map(max_attempts),
            job_key: extra("job_key"),
            priority: options.priority.map(priority),
        })
    }

    /// Adds `intents` as jobs in one statement and returns a receipt per job
    /// added: what [`Executor::dispatch`] does, for callers outside a scope.
    ///
    /// # Errors
    ///
    /// A [`DispatchFailure`] handing back every intent (none was added).
    pub async fn add(&self, intents: Vec<Intent>) -> Result<Vec<Receipt>, DispatchFailure> {
        match self.send(&intents).await {
            Ok(receipts) => Ok(receipts),
            Err(error) => Err(fail_all(intents, error)),
        }
    }

    /// Adds the jobs for `intents`, which the caller keeps holding until the
    /// outcome is known.
    async fn send(&self, intents: &[Intent]) -> Result<Vec<Receipt>, String> {
        self.send_on(&self.pool, intents).await
    }

    /// Adds the jobs for `intents` in one statement on `executor`: the pool,
    /// or a connection in a transaction (the jobs then commit or roll back
    /// with it).
    pub(crate) async fn send_on<'e, X>(
        &self,
        executor: X,
        intents: &[Intent],
    ) -> Result<Vec<Receipt>, String>
    where
        X: sqlx::PgExecutor<'e>,
    {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let specs = self.specs(intents).map_err(|(index, error)| {
            format!(
                "the payload of `{}` cannot be serialized to JSON, so no job of this flush was \
                 added: {error}",
                intents[index].name()
            )
        })?;
        let json = serde_json::to_string(&specs).map_err(|error| error.to_string())?;
        // The schema is quoted by `quote_ident`; the data is bound.
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(
            self.sql.as_str(),
        ))
        .bind(json)
        .fetch_all(executor)
        .await
        .map_err(|error| {
            format!(
                "graphile_worker did not add the {} job(s) of this flush (schema `{}`; is it \
                     migrated?): {error}",
                specs.len(),
                self.schema
            )
        })?;
        Ok(receipts(&specs, rows))
    }
}

/// Matches the rows `add_jobs` returned to the specs: keyed jobs by key, the
/// others in order. A keyed job whose pending twin is locked (running) is not
/// returned and gets no receipt.
fn receipts(specs: &[Spec], rows: Vec<(i64, Option<String>)>) -> Vec<Receipt> {
    let mut unkeyed = rows
        .iter()
        .filter(|(_, key)| key.is_none())
        .map(|(id, _)| *id);
    specs
        .iter()
        .filter_map(|spec| {
            let id = match &spec.job_key {
                None => unkeyed.next(),
                Some(key) => rows
                    .iter()
                    .find(|(_, row_key)| row_key.as_deref() == Some(key))
                    .map(|(id, _)| *id),
            }?;
            Some(Receipt {
                task: spec.identifier,
                queue: spec.queue_name.clone().unwrap_or_default(),
                job_id: id.to_string(),
            })
        })
        .collect()
}

/// Every intent handed back: the statement is atomic, so none was added.
fn fail_all(mut intents: Vec<Intent>, error: String) -> DispatchFailure {
    let failed = intents.remove(0);
    DispatchFailure {
        dispatched: 0,
        failed_task: failed.name(),
        failed: Some(failed),
        error: error.into(),
        not_attempted: intents,
    }
}

/// graphile's `max_attempts` is a `smallint` of at least 1.
fn max_attempts(attempts: u32) -> i16 {
    i16::try_from(attempts).unwrap_or(i16::MAX).max(1)
}

/// airlock: higher first; graphile: lower first, `smallint`.
fn priority(priority: i32) -> i16 {
    let inverted = priority.saturating_neg();
    i16::try_from(inverted).unwrap_or(if inverted < 0 { i16::MIN } else { i16::MAX })
}

fn delay_to_chrono(delay: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX)
}

/// `"name"`, with inner quotes doubled: a schema name as an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row of graphile's `job_spec` type.
#[derive(Serialize)]
struct Spec {
    identifier: &'static str,
    payload: serde_json::Value,
    queue_name: Option<String>,
    run_at: Option<chrono::DateTime<chrono::Utc>>,
    max_attempts: Option<i16>,
    job_key: Option<String>,
    priority: Option<i16>,
}

impl Executor for GraphileExecutor {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let executor = self.clone();
        Dispatch::Pending(Box::pin(async move {
            // `intents` stays whole until Postgres answered: if this future is
            // dropped half way, they go to the undelivered hook.
            match executor.send(intents.as_slice()).await {
                Ok(receipts) => {
                    drop(intents.into_vec());
                    crate::record_receipts(receipts);
                    Ok(())
                }
                Err(error) => Err(fail_all(intents.into_vec(), error)),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_invert_and_clamp_to_smallint() {
        assert_eq!(priority(0), 0);
        assert_eq!(priority(5), -5);
        assert_eq!(priority(-7), 7);
        assert_eq!(priority(100_000), i16::MIN);
        assert_eq!(priority(-100_000), i16::MAX);
        assert_eq!(priority(i32::MIN), i16::MAX);
    }

    #[test]
    fn max_attempts_clamp_to_a_positive_smallint() {
        assert_eq!(max_attempts(0), 1);
        assert_eq!(max_attempts(3), 3);
        assert_eq!(max_attempts(1_000_000), i16::MAX);
    }

    #[test]
    fn schema_names_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }
}
