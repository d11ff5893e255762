//! The executor: a flush becomes one batch push per queue.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskId};
use apalis_redis::{Config, ConnectionLike, ConnectionManager, RedisTask};

use super::Envelope;
use crate::{Dispatch, DispatchFailure, Executor, Intent, Intents, Receipt};

/// The queue intents go to when their options name none.
pub const DEFAULT_QUEUE: &str = "airlock";

/// Pushes each flush into apalis queues on Redis: one Lua script (one round
/// trip) per queue, with apalis-redis's own batch push
/// ([`apalis_redis::queries::push_tasks`]).
///
/// Each intent becomes an apalis job whose arguments are an [`Envelope`]
/// (`{task, payload, options}`), in the queue its options name
/// ([`DispatchOptions::queue`](crate::DispatchOptions::queue)), else
/// [`DEFAULT_QUEUE`] or the one set with [`default_queue`](Self::default_queue).
/// Within a queue, jobs keep the flush's order.
///
/// Options, mapped where apalis-redis has a place for them:
///
/// | airlock | apalis-redis |
/// |---|---|
/// | `queue` | the queue (`Config::queue`: its `{queue}:*` keys) |
/// | `delay` | `run_at` (whole seconds; apalis-redis puts every job in `{queue}:scheduled` by its `run_at`, now when there is no delay) |
/// | `max_attempts` | the job's `max_attempts`, enforced by [`Worker`](super::Worker) |
/// | extra `idempotency_key` (a string) | the job's idempotency key: a second job with the same key is not added |
/// | `priority` | **not mapped**: apalis-redis queues are FIFO; it stays in the envelope |
///
/// A flush that fails part-way returns a [`DispatchFailure`] handing back
/// every intent of the queues the engine did not confirm (Redis down, a
/// timeout): those may or may not have landed, so delivery is at least
/// once. Each confirmed intent gets a [`Receipt`] with its apalis task id in
/// the flush's [`FlushReport`](crate::FlushReport).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use airlock::apalis::RedisExecutor;
///
/// let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
/// let executor = RedisExecutor::new(conn).default_queue("shop");
/// airlock::Scope::new()
///     .executor(executor)
///     .run_async(async { /* airlock::enqueue(...) */ Ok::<(), airlock::Error>(()) })
///     .await?;
/// # Ok(()) }
/// ```
///
/// Any async Redis connection that can be cloned works (`C`); the default,
/// [`ConnectionManager`], reconnects by itself.
pub struct RedisExecutor<C = ConnectionManager> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for RedisExecutor<C> {
    fn clone(&self) -> Self {
        RedisExecutor {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
struct Inner<C> {
    conn: C,
    config: Config,
    default_queue: String,
}

impl<C> RedisExecutor<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Pushes through `conn` (see [`apalis_redis::connect`]).
    pub fn new(conn: C) -> Self {
        RedisExecutor {
            inner: Arc::new(Inner {
                conn,
                config: Config::default(),
                default_queue: DEFAULT_QUEUE.to_owned(),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner<C> {
        Arc::make_mut(&mut self.inner)
    }

    /// The queue for intents whose options name none.
    pub fn default_queue(mut self, queue: impl Into<String>) -> Self {
        self.inner_mut().default_queue = queue.into();
        self
    }

    /// The apalis-redis settings used for every queue (its `queue` is
    /// replaced by each intent's): `emit_events`, `idempotency_ttl`.
    pub fn config(mut self, config: Config) -> Self {
        self.inner_mut().config = config;
        self
    }

    /// The apalis-redis settings for `queue`: what a worker consuming it uses.
    pub fn queue_config(&self, queue: &str) -> Config {
        self.inner.config.clone().queue(queue)
    }

    /// Pushes `intents`, one round trip per queue, and returns a receipt per
    /// intent: what [`Executor::dispatch`] does, for callers outside a scope.
    ///
    /// # Errors
    ///
    /// A [`DispatchFailure`] handing back every intent not confirmed by
    /// Redis, in order (its `dispatched` counts the confirmed ones; with
    /// several queues they need not be the first ones).
    pub async fn push(&self, intents: Vec<Intent>) -> Result<Vec<Receipt>, DispatchFailure> {
        let outcome = self.send(&intents).await;
        outcome.settle(intents)
    }

    /// Pushes the jobs for `intents`, which the caller keeps holding until
    /// the outcome is known (a cancelled dispatch then loses nothing).
    async fn send(&self, intents: &[Intent]) -> Sent {
        let mut conn = self.inner.conn.clone();
        let mut prepared = Vec::with_capacity(intents.len());
        // Monotonic ids: apalis-redis orders jobs due in the same second by id,
        // so these keep the flush's order.
        let mut ids = ulid::Generator::new();
        for (index, intent) in intents.iter().enumerate() {
            match self.prepare(intent, &mut ids) {
                Ok(job) => prepared.push(job),
                Err(error) => {
                    let task = intent.name();
                    return Sent::failed(
                        vec![false; intents.len()],
                        index,
                        format!(
                            "the payload of `{task}` cannot be serialized to JSON, so no job of \
                             this flush was pushed: {error}"
                        ),
                        Vec::new(),
                    );
                }
            }
        }
        // Queues in order of first appearance; jobs in flush order within each.
        let mut queues: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, job) in prepared.iter().enumerate() {
            match queues.iter_mut().find(|(queue, _)| *queue == job.queue) {
                Some((_, members)) => members.push(index),
                None => queues.push((job.queue.clone(), vec![index])),
            }
        }
        let mut receipts = Vec::with_capacity(intents.len());
        let mut confirmed = vec![false; intents.len()];
        for (queue, members) in &queues {
            let config = self.queue_config(queue);
            let tasks: Vec<RedisTask> = members
                .iter()
                .map(|&i| prepared[i].task.take().expect("each job is pushed once"))
                .collect();
            if let Err(error) = apalis_redis::queries::push_tasks(&mut conn, &config, &tasks).await
            {
                let message = format!(
                    "Redis did not confirm the push of {} job(s) to apalis queue `{queue}`: \
                     {error}",
                    members.len()
                );
                return Sent::failed(confirmed, members[0], message, receipts);
            }
            for &i in members {
                confirmed[i] = true;
                receipts.push(Receipt {
                    task: prepared[i].name,
                    queue: queue.clone(),
                    job_id: prepared[i].id.clone(),
                });
            }
        }
        Sent {
            receipts,
            failure: None,
        }
    }

    fn prepare(&self, intent: &Intent, ids: &mut ulid::Generator) -> serde_json::Result<Prepared> {
        let envelope = Envelope::of(intent)?;
        let bytes = serde_json::to_vec(&envelope)?;
        let options = &envelope.options;
        let id = ids
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::generate())
            .to_string();
        let mut task = TaskBuilder::new(bytes).task_id(TaskId::from_string(id.clone()));
        if let Some(max_attempts) = options.max_attempts {
            task = task.max_attempts(max_attempts as usize);
        }
        if let Some(delay) = options.delay {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            task = task.run_at_timestamp((now + delay).as_secs());
        }
        if let Some(key) = options
            .extras
            .get("idempotency_key")
            .and_then(|k| k.as_str())
        {
            task = task.idempotency_key(key);
        }
        Ok(Prepared {
            name: intent.name(),
            queue: options
                .queue
                .as_deref()
                .unwrap_or(&self.inner.default_queue)
                .to_owned(),
            id,
            task: Some(task.build()),
        })
    }
}

/// What a push did: the receipts of the confirmed jobs and, if it stopped,
/// which intents were confirmed, the first one of the queue that failed and
/// why.
struct Sent {
    receipts: Vec<Receipt>,
    failure: Option<(Vec<bool>, usize, String)>,
}

impl Sent {
    fn failed(confirmed: Vec<bool>, first: usize, error: String, receipts: Vec<Receipt>) -> Self {
        Sent {
            receipts,
            failure: Some((confirmed, first, error)),
        }
    }

    /// The receipts, or a failure handing back every unconfirmed intent in
    /// order, the failed queue's first one as `failed`.
    fn settle(self, intents: Vec<Intent>) -> Result<Vec<Receipt>, DispatchFailure> {
        let Some((confirmed, first, error)) = self.failure else {
            return Ok(self.receipts);
        };
        crate::record_receipts(self.receipts);
        let dispatched = confirmed.iter().filter(|&&c| c).count();
        // Where the failed queue's first job sits among the unconfirmed ones.
        let position = confirmed[..first].iter().filter(|&&c| !c).count();
        let mut left: Vec<Intent> = intents
            .into_iter()
            .zip(confirmed)
            .filter_map(|(intent, confirmed)| (!confirmed).then_some(intent))
            .collect();
        let failed = left.remove(position);
        Err(DispatchFailure {
            dispatched,
            failed_task: failed.name(),
            failed: Some(failed),
            error: error.into(),
            not_attempted: left,
        })
    }
}

struct Prepared {
    name: &'static str,
    queue: String,
    id: String,
    task: Option<RedisTask>,
}

impl<C> Executor for RedisExecutor<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let executor = self.clone();
        Dispatch::Pending(Box::pin(async move {
            // `intents` stays whole until Redis answered: if this future is
            // dropped half way, they go to the undelivered hook.
            let sent = executor.send(intents.as_slice()).await;
            let receipts = sent.settle(intents.into_vec())?;
            crate::record_receipts(receipts);
            Ok(())
        }))
    }
}

impl<C> std::fmt::Debug for RedisExecutor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisExecutor")
            .field("default_queue", &self.inner.default_queue)
            .finish_non_exhaustive()
    }
}
