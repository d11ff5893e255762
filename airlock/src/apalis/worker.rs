//! The worker: runs apalis jobs as airlock tasks, each in its own scope.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, Attempt, BackendExt, BoxDynError, Codec, WorkerBuilder};
use apalis_redis::{ConnectionManager, RedisStorage};

use super::DEFAULT_QUEUE;
use crate::job::{self, Message, Startup};
use crate::registry::RegistryError;
use crate::{Executor, PortablePolicy};

/// apalis-redis's own default, used when a job names no `max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// The default limit on a job's size, in bytes.
pub const DEFAULT_MAX_JOB_BYTES: usize = 1 << 20;

/// Consumes apalis queues on Redis and runs each job as its registered task,
/// by name, inside its own scope: what the task enqueues escapes only if it
/// succeeds, through the worker's [`executor`](Worker::executor).
///
/// - At start-up it refuses to run if two tasks register the same name
///   ([`registry::validate`](crate::registry::validate)), and logs the
///   registered tasks it does not handle ([`tasks`](Worker::tasks)).
/// - A job that is not an [`Envelope`](super::Envelope), names an unknown or unhandled task,
///   has a payload that does not match the task's arguments, or exceeds
///   [`max_job_bytes`](Worker::max_job_bytes) fails permanently (apalis
///   `Killed`, in the queue's `{queue}:dead` set) with an error naming the
///   task and serde's message; the worker goes on with the next job.
/// - A task that fails or panics (or whose follow-ups cannot be dispatched)
///   is retried by apalis-redis (after 1 s, 2 s, 3 s, ...), up to the job's
///   `max_attempts` ([`DEFAULT_MAX_ATTEMPTS`] when unset); the last failure
///   is recorded permanently. (apalis-redis 1.0 itself retries up to 25
///   times whatever the job says; the worker enforces the job's limit.)
/// - A [`PortablePolicy`] that travelled with the job is the job scope's
///   policy, so it also judges what the job enqueues.
/// - On the shutdown signal it stops fetching and lets the jobs in flight
///   finish. If Redis goes away, the worker logs it and starts again until it
///   is back.
///
/// The job's result (or error) is in the job's `{queue}:meta:{id}` hash,
/// field `result`, as apalis-redis records it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use airlock::apalis::{RedisExecutor, Worker};
///
/// let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
/// Worker::new(conn.clone())
///     .queue("shop")
///     .executor(RedisExecutor::new(conn).default_queue("shop"))
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    conn: ConnectionManager,
    queues: Vec<String>,
    config: apalis_redis::Config,
    shared: Arc<Shared>,
    name: String,
    restart_delay: Duration,
}

struct Shared {
    executor: Option<Arc<dyn Executor>>,
    only: Option<Vec<String>>,
    max_job_bytes: usize,
}

impl Worker {
    /// A worker that reads through `conn`, consuming [`DEFAULT_QUEUE`] unless
    /// [`queue`](Worker::queue) says otherwise, and handling every registered
    /// task.
    pub fn new(conn: ConnectionManager) -> Self {
        Worker {
            conn,
            queues: Vec::new(),
            config: apalis_redis::Config::default(),
            shared: Arc::new(Shared {
                executor: None,
                only: None,
                max_job_bytes: DEFAULT_MAX_JOB_BYTES,
            }),
            name: format!("airlock-{}", ulid::Ulid::generate()),
            restart_delay: Duration::from_secs(1),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("the worker is not running yet")
    }

    /// Consumes `queue` too (call once per queue).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Where the jobs' own intents go (usually a [`RedisExecutor`](super::RedisExecutor));
    /// the defaults' executor when unset.
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.shared_mut().executor = Some(Arc::new(executor));
        self
    }

    /// Handles only these tasks; jobs of other tasks fail as unhandled.
    pub fn tasks<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.shared_mut().only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Fails jobs bigger than `bytes` without decoding them (default
    /// [`DEFAULT_MAX_JOB_BYTES`]).
    pub fn max_job_bytes(mut self, bytes: usize) -> Self {
        self.shared_mut().max_job_bytes = bytes;
        self
    }

    /// apalis-redis settings for every queue (its `queue` is replaced):
    /// `batch_size`, `heartbeat_interval`, ...
    pub fn config(mut self, config: apalis_redis::Config) -> Self {
        self.config = config;
        self
    }

    /// The worker's name in apalis (queue names are appended).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks the registry and says which registered tasks this worker
    /// handles; [`run`](Worker::run) does this first.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Duplicate`] if two tasks register one name.
    pub fn check(&self) -> Result<Startup, RegistryError> {
        job::startup(self.shared.only.as_deref())
    }

    /// Runs until Ctrl-C or `SIGTERM`.
    ///
    /// # Errors
    ///
    /// As [`check`](Worker::check): the worker does not start.
    pub async fn run(self) -> Result<(), RegistryError> {
        self.run_until(crate::job::shutdown_signal()).await
    }

    /// Runs until `signal` completes, then lets the jobs in flight finish.
    ///
    /// # Errors
    ///
    /// As [`check`](Worker::check): the worker does not start.
    pub async fn run_until<S>(self, signal: S) -> Result<(), RegistryError>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        self.check()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let queues = if self.queues.is_empty() {
            vec![DEFAULT_QUEUE.to_owned()]
        } else {
            self.queues.clone()
        };
        let workers = queues.into_iter().map(|queue| {
            consume(
                self.conn.clone(),
                self.config.clone().queue(&queue),
                format!("{}-{queue}", self.name),
                self.shared.clone(),
                stopped.clone(),
                self.restart_delay,
            )
        });
        // Not spawned: apalis's worker futures are not provably `Send`.
        let all = futures_util::future::join_all(workers);
        let signal = async move {
            signal.await;
            tracing::info!(target: "airlock", "worker shutting down: finishing the jobs in flight");
            let _ = stop.send(true);
        };
        tokio::join!(all, signal);
        Ok(())
    }
}

/// Runs one apalis worker on one queue, starting it again after a backend
/// error (Redis down) until `stopped`.
async fn consume(
    conn: ConnectionManager,
    config: apalis_redis::Config,
    name: String,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    restart_delay: Duration,
) {
    for run in 0u64.. {
        if *stopped.borrow() {
            return;
        }
        let backend = RedisStorage::<Vec<u8>>::new(conn.clone())
            .with_config(config.clone())
            .with_codec(Raw);
        let handler_shared = shared.clone();
        let worker = WorkerBuilder::new(format!("{name}-{run}"))
            .backend(backend)
            .build(
                move |job: Vec<u8>,
                      attempt: Attempt|
                      -> crate::BoxFuture<Result<(), BoxDynError>> {
                    let shared = handler_shared.clone();
                    Box::pin(async move { handle(&shared, &job, attempt.current()).await })
                },
            );
        let mut signal = stopped.clone();
        let result = worker
            .run_until(async move {
                let _ = signal.wait_for(|stop| *stop).await;
                Ok::<(), std::io::Error>(())
            })
            .await;
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(
                    target: "airlock",
                    queue = %config.queue,
                    %error,
                    "the apalis worker stopped; starting it again"
                );
                tokio::select! {
                    () = tokio::time::sleep(restart_delay) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// One job: the envelope's task, run through the registry in its own scope.
async fn handle(shared: &Shared, job: &[u8], attempt: usize) -> Result<(), BoxDynError> {
    if job.len() > shared.max_job_bytes {
        let task = serde_json::from_slice::<TaskName>(job).ok().map(|t| t.task);
        return Err(abort(format!(
            "job for task `{}` is {} bytes, over this worker's limit of {} \
             (`Worker::max_job_bytes`): it was not run",
            task.as_deref().unwrap_or("?"),
            job.len(),
            shared.max_job_bytes
        )));
    }
    let envelope: Incoming<'_> = match serde_json::from_slice(job) {
        Ok(envelope) => envelope,
        Err(error) => {
            return Err(abort(format!(
                "job is not an airlock envelope {{\"task\", \"payload\", \"options\"}}: {error}"
            )));
        }
    };
    let task = &*envelope.task;
    if let Some(only) = &shared.only
        && !only.iter().any(|name| name == task)
    {
        return Err(abort(format!(
            "this worker does not handle task `{task}` (see `Worker::tasks`)"
        )));
    }
    let max_attempts = envelope
        .options
        .max_attempts
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let intent = match crate::registry::decode(task, envelope.payload.get()) {
        Ok(intent) => intent,
        Err(error) => return Err(abort(job::chain(&error))),
    };
    match job::run_intent(intent, envelope.policy, shared.executor.as_ref()).await {
        Ok(()) => Ok(()),
        Err(error) if attempt >= max_attempts as usize => Err(abort(format!(
            "gave up after attempt {attempt} of {max_attempts}: {}",
            job::chain(&*error)
        ))),
        Err(error) => Err(Box::new(Message(job::chain(&*error)))),
    }
}

/// An [`Envelope`](super::Envelope) as the worker reads it: the payload left as raw JSON for
/// the task's own `Deserialize`.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    task: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
    #[serde(default)]
    options: crate::DispatchOptions,
    #[serde(default)]
    policy: Option<PortablePolicy>,
}

fn abort(message: String) -> BoxDynError {
    Box::new(AbortError::new(Box::new(Message(message)) as BoxDynError))
}

#[derive(serde::Deserialize)]
struct TaskName {
    task: String,
}

/// Hands the job's bytes to [`handle`] undecoded, so that a job that is not
/// JSON fails as a job instead of stopping the stream.
#[derive(Clone, Copy, Debug, Default)]
struct Raw;

impl Codec<Vec<u8>> for Raw {
    type Error = std::convert::Infallible;
    type Compact = Vec<u8>;

    fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, Self::Error> {
        Ok(value.clone())
    }

    fn decode(&self, compact: &Vec<u8>) -> Result<Vec<u8>, Self::Error> {
        Ok(compact.clone())
    }
}
