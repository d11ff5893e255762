//! The worker: graphile_worker runs each task type through a generic job
//! adapter, each job in its own scope.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use graphile_worker::{
    IntoTaskHandlerResult, JobDefinition, TaskHandler, WorkerContext, WorkerOptions,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::executor::{POLICY_KEY, quote_ident};
use crate::job::{self, Startup};
use crate::registry::RegistryError;
use crate::{Executor, Intent, PortablePolicy, Task};

/// The default limit on a job's payload, in bytes of JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// graphile_worker's job adapter for task `T`: a [`TaskHandler`] whose
/// identifier is [`T::NAME`](Task::NAME) and whose payload is the task's
/// JSON, decoded when the job runs (so a payload that does not match is a
/// clear, permanent failure rather than a retried deserialization error).
///
/// [`Worker::task`] registers it; it is public so that a
/// [`WorkerOptions`] built by hand can `define_job::<Job<T>>()` too (jobs then
/// run with the defaults' executor).
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Job<T> {
    payload: serde_json::Value,
    #[serde(skip)]
    task: PhantomData<fn() -> T>,
}

impl<T: Task> TaskHandler for Job<T> {
    const IDENTIFIER: &'static str = T::NAME;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        handle::<T>(self.payload, ctx).await
    }
}

/// How a job ended badly.
enum Ended {
    /// Retrying cannot help (malformed payload): the task did not run.
    Permanent(crate::BoxError),
    /// The task failed: graphile may retry it.
    Failed(crate::BoxError),
}

/// The job's error as graphile records it in `last_error` (graphile formats
/// it with `Debug`: this one prints the message as is).
struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone)]
struct Shared {
    executor: Option<Arc<dyn Executor>>,
    max_payload_bytes: usize,
    schema: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

async fn handle<T: Task>(
    mut payload: serde_json::Value,
    ctx: WorkerContext,
) -> Result<(), Failure> {
    let shared = ctx.get_ext::<Arc<Shared>>().cloned();
    let max_payload_bytes = shared
        .as_ref()
        .map_or(DEFAULT_MAX_PAYLOAD_BYTES, |s| s.max_payload_bytes);
    let result = async {
        let size = json_size(&payload);
        if size > max_payload_bytes {
            return Err(Ended::Permanent(
                format!(
                    "the payload for task `{}` is {size} bytes of JSON, over this worker's \
                     limit of {max_payload_bytes} (`Worker::max_payload_bytes`): it was not run",
                    T::NAME
                )
                .into(),
            ));
        }
        let policy = match payload.as_object_mut().and_then(|p| p.remove(POLICY_KEY)) {
            None => None,
            Some(policy) => Some(serde_json::from_value::<PortablePolicy>(policy).map_err(
                |error| {
                    Ended::Permanent(
                        format!(
                            "the policy that travelled with task `{}` is malformed: {error}",
                            T::NAME
                        )
                        .into(),
                    )
                },
            )?),
        };
        let task = serde_json::from_value::<T>(payload).map_err(|source| {
            Ended::Permanent(Box::new(RegistryError::Payload {
                task: T::NAME,
                source,
            }))
        })?;
        let executor = shared.as_ref().and_then(|s| s.executor.as_ref());
        job::run_intent(Intent::new(task), policy, executor)
            .await
            .map_err(Ended::Failed)
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(Ended::Failed(error)) => Err(Failure(job::chain(&*error))),
        Err(Ended::Permanent(error)) => {
            give_up(&ctx, shared.as_deref()).await;
            Err(Failure(format!(
                "permanent failure, not retried: {}",
                job::chain(&*error)
            )))
        }
    }
}

/// Makes this attempt the last: graphile retries a failed job while its
/// `attempts` are below `max_attempts`.
async fn give_up(ctx: &WorkerContext, shared: Option<&Shared>) {
    let schema = shared.map_or("graphile_worker", |s| s.schema.as_str());
    let sql = format!(
        "UPDATE {}._private_jobs SET max_attempts = attempts WHERE id = $1",
        quote_ident(schema)
    );
    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ctx.job().id())
        .execute(ctx.pg_pool())
        .await
    {
        tracing::error!(
            target: "airlock",
            job = ctx.job().id(),
            %error,
            "could not mark a permanently failed job as final: graphile will retry it"
        );
    }
}

/// The length of `value` as JSON, without building the string.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Why a graphile worker did not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The registry is invalid (a duplicated name).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// graphile_worker could not start (connection, migration).
    #[error("graphile_worker could not start")]
    Start(#[source] graphile_worker::WorkerBuildError),
    /// graphile_worker stopped with an error.
    #[error("graphile_worker stopped with an error")]
    Run(#[source] graphile_worker::runner::WorkerRuntimeError),
    /// The start-up check could not read the queue.
    #[error("could not read graphile's queue for the start-up check")]
    Database(#[source] sqlx::Error),
}

/// Runs graphile_worker jobs as airlock tasks: one [`Job`] adapter per task
/// type ([`task`](Worker::task)), keyed by the task's name, so Node.js
/// workers, SQL triggers and graphile's admin tools see one identifier per
/// task. Each job runs in its own scope: what it enqueues escapes only if it
/// succeeds, through the worker's [`executor`](Worker::executor).
///
/// - At start-up it refuses to run if two tasks register one name, warns
///   about registered tasks it does not handle, and about identifiers
///   waiting in the queue that it does not handle (graphile leaves those
///   waiting for a worker that does).
/// - A payload that does not match the task's arguments, or is over
///   [`max_payload_bytes`](Worker::max_payload_bytes), fails permanently
///   (its `max_attempts` is lowered to its attempts, so graphile does not
///   retry it) with an error naming the task and serde's message in
///   `last_error`.
/// - A task that fails or panics is retried by graphile with its
///   exponential backoff, up to the job's `max_attempts`.
/// - A [`PortablePolicy`] that travelled with the job is the job scope's
///   policy.
/// - On the shutdown signal graphile stops fetching and lets the jobs in
///   flight finish within its grace period.
///
/// # Examples
///
/// ```no_run
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendEmail { order_id: u64 }
/// # impl Task for SendEmail { const NAME: &'static str = "send_email"; fn run(self) -> Run { Run::ok() } }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use airlock::graphile::{GraphileExecutor, Worker};
///
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?;
/// Worker::new(pool.clone())
///     .task::<SendEmail>()
///     .executor(GraphileExecutor::new(pool))
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    pool: PgPool,
    schema: String,
    definitions: Vec<JobDefinition>,
    names: Vec<String>,
    executor: Option<Arc<dyn Executor>>,
    concurrency: usize,
    max_payload_bytes: usize,
    options: Option<Box<dyn FnOnce(WorkerOptions) -> WorkerOptions + Send>>,
}

impl Worker {
    /// A worker on `pool`, in graphile's default schema `graphile_worker`,
    /// handling no task yet.
    pub fn new(pool: PgPool) -> Self {
        Worker {
            pool,
            schema: "graphile_worker".to_owned(),
            definitions: Vec::new(),
            names: Vec::new(),
            executor: None,
            concurrency: 4,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            options: None,
        }
    }

    /// Handles task `T` (its [`Job`] adapter, identifier `T::NAME`).
    pub fn task<T: Task>(mut self) -> Self {
        self.definitions.push(JobDefinition::of::<Job<T>>());
        self.names.push(T::NAME.to_owned());
        self
    }

    /// The schema graphile_worker lives in (migrated at start-up).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Where the jobs' own intents go (usually a
    /// [`GraphileExecutor`](super::GraphileExecutor)); the defaults' executor
    /// when unset.
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// How many jobs run at once (default 4).
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs;
        self
    }

    /// Fails jobs whose payload is over `bytes` of JSON without decoding them
    /// (default [`DEFAULT_MAX_PAYLOAD_BYTES`]).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Adjusts graphile's own options (poll interval, hooks, crontabs) after
    /// this worker has set its own.
    pub fn options<F>(mut self, adjust: F) -> Self
    where
        F: FnOnce(WorkerOptions) -> WorkerOptions + Send + 'static,
    {
        self.options = Some(Box::new(adjust));
        self
    }

    /// Checks the registry, says which registered tasks this worker does not
    /// handle, and which identifiers wait in the queue with no handler here
    /// ([`Startup::unknown`]). Expects the schema migrated (run does that
    /// first).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Registry`] for a duplicated name;
    /// [`WorkerError::Database`] if the queue cannot be read.
    pub async fn check(&self) -> Result<Startup, WorkerError> {
        let mut startup = job::startup(Some(&self.names))?;
        let schema = quote_ident(&self.schema);
        let sql = format!(
            "SELECT DISTINCT t.identifier FROM {schema}._private_tasks t \
             JOIN {schema}._private_jobs j ON j.task_id = t.id \
             WHERE j.attempts < j.max_attempts ORDER BY 1"
        );
        let waiting: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(WorkerError::Database)?;
        let unhandled: Vec<String> = waiting
            .into_iter()
            .map(|(name,)| name)
            .filter(|name| !self.names.contains(name))
            .collect();
        if !unhandled.is_empty() {
            tracing::warn!(
                target: "airlock",
                identifiers = ?unhandled,
                "jobs wait in graphile's queue for identifiers this worker does not handle"
            );
        }
        startup.unknown.extend(unhandled);
        Ok(startup)
    }

    /// Runs until Ctrl-C or `SIGTERM`.
    ///
    /// # Errors
    ///
    /// As [`run_until`](Worker::run_until).
    pub async fn run(self) -> Result<(), WorkerError> {
        self.run_until(crate::job::shutdown_signal()).await
    }

    /// Runs until `signal` completes, then lets the jobs in flight finish.
    ///
    /// # Errors
    ///
    /// A duplicated task name, graphile failing to start (connection,
    /// migration) or stopping with an error.
    pub async fn run_until<S>(self, signal: S) -> Result<(), WorkerError>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        crate::registry::validate()?;
        let shared = Arc::new(Shared {
            executor: self.executor.clone(),
            max_payload_bytes: self.max_payload_bytes,
            schema: self.schema.clone(),
        });
        let mut options = WorkerOptions::default()
            .pg_pool(self.pool.clone())
            .schema(self.schema.as_str())
            .concurrency(self.concurrency)
            .define_jobs(self.definitions)
            .add_extension(shared)
            .listen_os_shutdown_signals(false)
            .shutdown_signal(signal);
        if let Some(adjust) = self.options {
            options = adjust(options);
        }
        let worker = options.init().await.map_err(WorkerError::Start)?;
        let checker = Worker {
            pool: self.pool,
            schema: self.schema,
            definitions: Vec::new(),
            names: self.names,
            executor: None,
            concurrency: 0,
            max_payload_bytes: 0,
            options: None,
        };
        checker.check().await?;
        worker.run().await.map_err(WorkerError::Run)
    }
}
