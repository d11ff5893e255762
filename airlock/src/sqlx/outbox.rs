//! The outbox table's rows: written from intents in the caller's
//! transaction, read back into intents by the relay, listed and replayed by
//! operators.

use std::fmt;
use std::time::Duration;

use ::sqlx::Pool;

use super::backend::Backend;
use super::tx::TxError;
use crate::intent::Intent;
use crate::task::DispatchOptions;

/// The key, in [`DispatchOptions::extras`], of an intent's outbox row id
/// when the [`Relay`](super::Relay) dispatches it: stable across retries and
/// relays, so an executor can use it as an idempotency key. Read it with
/// [`outbox_id`].
pub const OUTBOX_ID: &str = "airlock.outbox_id";

/// The outbox row id of an intent dispatched by the relay, for use as an
/// idempotency key; `None` for an intent that did not come from the outbox.
///
/// # Examples
///
/// ```
/// # use airlock::{Intent, Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
/// assert_eq!(airlock::sqlx::outbox_id(&Intent::new(Ping)), None);
/// ```
pub fn outbox_id(intent: &Intent) -> Option<i64> {
    intent.options().extras.get(OUTBOX_ID)?.as_i64()
}

/// Where a row is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowState {
    /// Committed, waiting for the relay (or for its next attempt).
    Pending,
    /// Dispatched.
    Done,
    /// Gave up: attempts exhausted, or the row cannot be decoded. Listed by
    /// [`Outbox::dead`], retried by [`Outbox::replay`].
    Dead,
}

impl RowState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::Done => "done",
            RowState::Dead => "dead",
        }
    }

    pub(crate) fn parse(state: &str) -> RowState {
        match state {
            "done" => RowState::Done,
            "dead" => RowState::Dead,
            _ => RowState::Pending,
        }
    }
}

/// One row of `airlock_outbox`, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRow {
    /// Stable id: the idempotency key executors see as [`OUTBOX_ID`].
    pub id: i64,
    /// The task's stable name.
    pub task: String,
    /// The task's arguments, as JSON.
    pub payload: String,
    /// The dispatch options, as JSON.
    pub options: String,
    /// Where the intent came from, if recorded.
    pub origin: Option<String>,
    /// How many times the relay tried it.
    pub attempts: i32,
    /// The intent's own attempt limit, if it had one.
    pub max_attempts: Option<i32>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// Pending, done or dead.
    pub state: RowState,
    /// When it was written (the database's text form).
    pub created_at: String,
}

impl OutboxRow {
    /// Decodes the row into an intent through the task registry, with its
    /// options, origin and [`OUTBOX_ID`].
    ///
    /// # Errors
    ///
    /// A message naming the row and the task when the name is unknown to this
    /// binary, or the payload or options do not decode.
    pub fn decode(&self) -> Result<Intent, String> {
        let intent = crate::registry::decode(&self.task, &self.payload)
            .map_err(|error| format!("outbox row {}: {error}", self.id))?;
        let mut options: DispatchOptions =
            serde_json::from_str(&self.options).map_err(|error| {
                format!(
                    "outbox row {}: the options of task `{}` do not decode: {error}",
                    self.id, self.task
                )
            })?;
        // The delay was served by `available_at`.
        options.delay = None;
        options.extras.insert(OUTBOX_ID.to_owned(), self.id.into());
        let intent = intent.with_options(options);
        Ok(match &self.origin {
            Some(origin) => intent.with_origin(origin.clone()),
            None => intent,
        })
    }
}

impl fmt::Display for OutboxRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {}({}) [{:?}, {} attempt(s)",
            self.id, self.task, self.payload, self.state, self.attempts
        )?;
        if let Some(error) = &self.last_error {
            write!(f, ", last error: {error}")?;
        }
        f.write_str("]")
    }
}

/// A row to insert.
pub(crate) struct NewRow {
    pub(crate) task: String,
    pub(crate) payload: String,
    pub(crate) options: String,
    pub(crate) origin: Option<String>,
    pub(crate) max_attempts: Option<i32>,
    pub(crate) delay_ms: i64,
}

/// A failed attempt: retry after `retry_in`, or dead when `None`.
pub(crate) struct Failure {
    pub(crate) id: i64,
    pub(crate) error: String,
    pub(crate) retry_in: Option<Duration>,
}

/// Serializes intents into rows, naming the first that cannot be.
pub(crate) fn rows<'a>(
    intents: impl IntoIterator<Item = &'a Intent>,
) -> Result<Vec<NewRow>, TxError> {
    intents
        .into_iter()
        .map(|intent| {
            let task = intent.name();
            let serialize = |source| TxError::Serialize { task, source };
            let payload = intent.to_json().map_err(serialize)?.to_string();
            let mut options = intent.options().into_owned();
            let delay_ms = options.delay.take().map_or(0, |delay| {
                i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
            });
            let max_attempts = options
                .max_attempts
                .map(|max| i32::try_from(max).unwrap_or(i32::MAX));
            let options = match options == DispatchOptions::default() {
                true => "{}".to_owned(),
                false => serde_json::to_string(&options).map_err(serialize)?,
            };
            Ok(NewRow {
                task: task.to_owned(),
                payload,
                options,
                origin: intent.origin().map(str::to_owned),
                max_attempts,
                delay_ms,
            })
        })
        .collect()
}

/// The outbox table, for operators: list dead rows, replay them, count, and
/// purge what was dispatched.
///
/// # Examples
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let outbox = airlock::sqlx::Outbox::new(pool);
/// for row in outbox.dead(100).await? {
///     println!("{row}"); // #7 send_email({"to":"a@b.c"}) [Dead, 5 attempt(s), last error: ...]
/// }
/// outbox.replay_all().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Outbox<DB: Backend> {
    pool: Pool<DB>,
}

impl<DB: Backend> Outbox<DB> {
    /// The outbox in `pool`'s database.
    pub fn new(pool: Pool<DB>) -> Self {
        Outbox { pool }
    }

    /// Up to `limit` dead rows, oldest first.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn dead(&self, limit: i64) -> Result<Vec<OutboxRow>, ::sqlx::Error> {
        self.list(RowState::Dead, 0, limit).await
    }

    /// Up to `limit` rows in `state` with an id above `after`, by id: page
    /// through a state by passing the last id seen.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn list(
        &self,
        state: RowState,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, ::sqlx::Error> {
        DB::list(&self.pool, state, after, limit).await
    }

    /// How many rows are in `state`.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn count(&self, state: RowState) -> Result<i64, ::sqlx::Error> {
        DB::count(&self.pool, state).await
    }

    /// Makes these dead rows pending again, attempts reset; returns how many
    /// were dead. Ids of rows that are not dead are ignored.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn replay(&self, ids: &[i64]) -> Result<u64, ::sqlx::Error> {
        DB::replay(&self.pool, Some(ids)).await
    }

    /// Makes every dead row pending again; returns how many.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn replay_all(&self) -> Result<u64, ::sqlx::Error> {
        DB::replay(&self.pool, None).await
    }

    /// Deletes rows dispatched more than `age` ago; returns how many.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn purge_done(&self, age: Duration) -> Result<u64, ::sqlx::Error> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        DB::purge_done(&self.pool, age_ms).await
    }
}
