//! The relay: dispatches committed outbox rows through an executor, marks
//! them done, retries failures with backoff, and gives up (dead) after
//! `max_attempts`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::sqlx::Pool;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::outbox::{Failure, OutboxRow};
use crate::executor::{Dispatch, Executor};

/// Wakes the relays of this process when a transaction commits outbox rows.
static WAKE: Notify = Notify::const_new();

pub(crate) fn wake_local() {
    WAKE.notify_waiters();
}

/// Dispatches committed `airlock_outbox` rows through an executor: a tokio
/// task the application starts with [`spawn`](Relay::spawn) and stops with
/// [`RelayHandle::shutdown`].
///
/// Each round claims up to [`batch_size`](Relay::batch_size) due rows (on
/// PostgreSQL with `FOR UPDATE SKIP LOCKED` in a transaction held while they
/// are dispatched, so relays on several machines never dispatch the same row
/// at once; on SQLite with a [lease](Relay::lease) taken under `BEGIN
/// IMMEDIATE`), decodes them through the task registry, hands the batch to
/// the executor, and records the outcome: dispatched rows are
/// done; the row the executor failed on is retried after a backoff, or dead
/// after `max_attempts`; rows that cannot be decoded (unknown task, payload
/// that does not match) are dead at once with the reason, and do not hold
/// up the others. Delivery is at least once: a relay that dies mid-round
/// leaves its rows to the next (on SQLite, when the lease runs out). Executors read the row id, a stable
/// idempotency key, with [`outbox_id`](super::outbox_id). Retries cover the
/// failures the executor reports: [`InlineExecutor`](crate::InlineExecutor)
/// runs each task and reports its error; `TokioExecutor` reports only that
/// it spawned the task.
///
/// The relay wakes when a transaction in this process commits rows, on
/// PostgreSQL also on `NOTIFY` from any process, and polls every
/// [`poll_interval`](Relay::poll_interval) regardless.
///
/// # Examples
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use airlock::InlineExecutor;
/// use airlock::sqlx::Relay;
///
/// airlock::sqlx::migrate(&pool).await?;
/// // Runs each task in the relay, so a failing task is retried.
/// let relay = Relay::new(pool.clone(), InlineExecutor).spawn();
/// // ... serve ...
/// relay.shutdown().await; // finishes the round under way
/// # Ok(()) }
/// ```
pub struct Relay<DB: Backend> {
    pool: Pool<DB>,
    executor: Arc<dyn Executor>,
    batch_size: i64,
    poll_interval: Duration,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    lease: Duration,
}

impl<DB: Backend> Clone for Relay<DB> {
    fn clone(&self) -> Self {
        Relay {
            pool: self.pool.clone(),
            executor: self.executor.clone(),
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_backoff: self.max_backoff,
            lease: self.lease,
        }
    }
}

impl<DB: Backend> fmt::Debug for Relay<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> Relay<DB> {
    /// A relay for the outbox in `pool`'s database, dispatching through
    /// `executor`. Defaults: batches of 100, polling every second, 5
    /// attempts, backoff from 1 s doubling up to 5 min.
    pub fn new(pool: Pool<DB>, executor: impl Executor) -> Self {
        Relay {
            pool,
            executor: Arc::new(executor),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(300),
        }
    }

    /// How many rows one round claims and hands to the executor at once.
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = i64::from(rows.max(1));
        self
    }

    /// How often to look for due rows when nothing wakes the relay.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Attempts before a row is dead, unless the intent set its own
    /// ([`DispatchOptions::max_attempts`](crate::DispatchOptions)).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait after the first failure, doubled after each further one, up
    /// to `max`.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// SQLite: how long a claimed row is kept from other relays while it is
    /// dispatched; a relay that dies mid-round leaves its rows to the next
    /// once this runs out. Longer than your slowest dispatch. (PostgreSQL
    /// holds row locks instead, released when the relay's connection goes.)
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// When to try a row again after its `attempt`-th failure; `None` when
    /// it has had all its attempts.
    fn retry_in(&self, row: &OutboxRow) -> Option<Duration> {
        let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let max = row
            .max_attempts
            .and_then(|max| u32::try_from(max).ok())
            .unwrap_or(self.max_attempts);
        if attempt >= max {
            return None;
        }
        let factor = 2u32.saturating_pow(attempt - 1);
        Some(self.backoff.saturating_mul(factor).min(self.max_backoff))
    }

    /// One round: claim due rows, dispatch them, record the outcome. Returns
    /// how many rows were claimed (0: nothing was due).
    ///
    /// # Errors
    ///
    /// The database's error; the round's rows stay pending for the next (on
    /// SQLite, once their lease runs out).
    pub async fn run_once(&self) -> Result<usize, ::sqlx::Error> {
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        let rows = DB::claim(&mut tx, self.batch_size, lease_ms).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut held = Some(tx);
        if !DB::LOCKS_ROWS {
            // Leased: let the tasks have the database while they run.
            if let Some(tx) = held.take() {
                tx.commit().await?;
            }
        }
        let (done, failed, released) = self.dispatch(&rows).await;
        let mut tx = match held {
            Some(tx) => tx,
            None => self.begin().await?,
        };
        DB::settle(&mut tx, &done, &failed, &released).await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    async fn begin(&self) -> Result<::sqlx::Transaction<'static, DB>, ::sqlx::Error> {
        match DB::BEGIN {
            None => self.pool.begin().await,
            Some(statement) => self.pool.begin_with(statement).await,
        }
    }

    /// Decodes and dispatches claimed rows: the ids done, the failures, and
    /// the ids not attempted.
    async fn dispatch(&self, rows: &[OutboxRow]) -> (Vec<i64>, Vec<Failure>, Vec<i64>) {
        let mut failed = Vec::new();
        let mut decoded = Vec::with_capacity(rows.len());
        let mut intents = Vec::with_capacity(rows.len());
        for row in rows {
            match row.decode() {
                Ok(intent) => {
                    decoded.push(row);
                    intents.push(intent);
                }
                Err(error) => {
                    tracing::error!(target: "airlock", id = row.id, task = %row.task, %error, "outbox row is dead: it cannot be decoded");
                    failed.push(Failure {
                        id: row.id,
                        error,
                        retry_in: None,
                    });
                }
            }
        }
        let result = match intents.is_empty() {
            true => Ok(()),
            false => match self.executor.dispatch(intents.into()) {
                Dispatch::Done(result) => result,
                Dispatch::Pending(future) => future.await,
            },
        };
        let dispatched = match result {
            Ok(()) => decoded.len(),
            Err(failure) => {
                let index = failure.dispatched.min(decoded.len());
                if let Some(row) = decoded.get(index) {
                    let retry_in = self.retry_in(row);
                    let error = failure.error.to_string();
                    match retry_in {
                        Some(wait) => {
                            tracing::warn!(target: "airlock", id = row.id, task = %row.task, %error, ?wait, "outbox row failed; it will be retried")
                        }
                        None => {
                            tracing::error!(target: "airlock", id = row.id, task = %row.task, %error, "outbox row is dead: its attempts are exhausted")
                        }
                    }
                    failed.push(Failure {
                        id: row.id,
                        error,
                        retry_in,
                    });
                }
                index
            }
        };
        let done = decoded[..dispatched].iter().map(|row| row.id).collect();
        // The rows after a failed one were not attempted.
        let released = decoded
            .iter()
            .skip(dispatched + 1)
            .map(|row| row.id)
            .collect();
        (done, failed, released)
    }

    /// Runs rounds until one finds nothing due; returns how many rows were
    /// claimed in all. For tests, scripts and shutdown hooks.
    ///
    /// # Errors
    ///
    /// As [`run_once`](Relay::run_once).
    pub async fn drain(&self) -> Result<usize, ::sqlx::Error> {
        let mut total = 0;
        loop {
            match self.run_once().await? {
                0 => return Ok(total),
                claimed => total += claimed,
            }
        }
    }

    /// Starts the relay as a tokio task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        RelayHandle {
            stop,
            task: tokio::spawn(self.run(stopped)),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut listener = DB::listen(&self.pool).await;
        loop {
            if *stop.borrow() {
                return;
            }
            // Armed before the round, so a commit during it is not missed.
            let woken = WAKE.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let claimed = match self.run_once().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(target: "airlock", %error, "outbox relay round failed; retrying after the poll interval");
                    0
                }
            };
            if i64::try_from(claimed).unwrap_or(i64::MAX) >= self.batch_size {
                continue;
            }
            let mut listen_failed = false;
            {
                let notified = async {
                    match listener.as_mut() {
                        Some(listener) => DB::notified(listener).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = stop.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = &mut woken => {}
                    result = notified => if let Err(error) = result {
                        tracing::warn!(target: "airlock", %error, "outbox relay: LISTEN failed; polling only");
                        listen_failed = true;
                    },
                }
            }
            if listen_failed {
                listener = None;
            }
        }
    }
}

/// A running [`Relay`]. [`shutdown`](RelayHandle::shutdown) stops it
/// gracefully; dropping the handle stops it too, after the round under way.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay after the round under way and waits for it: no row is
    /// left half-recorded.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await
            && error.is_panic()
        {
            tracing::error!(target: "airlock", "the outbox relay panicked (an executor or task panicked): its round's rows stay pending");
        }
    }

    /// Whether the relay task has ended (shut down, or an executor panicked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(all(test, feature = "sqlx-sqlite"))]
mod tests {
    use std::time::Duration;

    use super::Relay;
    use crate::InlineExecutor;
    use crate::sqlx::{OutboxRow, RowState};

    fn row(attempts: i32, max_attempts: Option<i32>) -> OutboxRow {
        OutboxRow {
            id: 1,
            task: "t".into(),
            payload: "{}".into(),
            options: "{}".into(),
            origin: None,
            attempts,
            max_attempts,
            last_error: None,
            state: RowState::Pending,
            created_at: String::new(),
        }
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_its_cap_then_the_row_is_dead() {
        let pool = ::sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap();
        let relay = Relay::new(pool, InlineExecutor)
            .max_attempts(5)
            .backoff(Duration::from_secs(1), Duration::from_secs(3));
        let waits: Vec<_> = (0..5)
            .map(|attempts| relay.retry_in(&row(attempts, None)))
            .collect();
        let s = Duration::from_secs;
        assert_eq!(
            waits,
            [Some(s(1)), Some(s(2)), Some(s(3)), Some(s(3)), None]
        );
        assert_eq!(
            relay.retry_in(&row(0, Some(1))),
            None,
            "the intent's own max_attempts"
        );
        assert_eq!(relay.retry_in(&row(1, Some(3))), Some(s(2)));
    }
}
