//! The task trait: what a buffered side effect is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The error a task returns, and the error an executor reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed future that resolves to a task's or an executor's result.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A side effect that can be buffered, serialized and run later.
///
/// The struct's fields are the call's arguments. `#[airlock::task]` writes this
/// impl for you; the trait is public so that a task can also be written by hand
/// (and so that tests can do so without the macros).
///
/// # Examples
///
/// ```
/// use airlock::{Run, Task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// struct SendEmail {
///     order_id: u64,
///     to: String,
/// }
///
/// impl Task for SendEmail {
///     const NAME: &'static str = "send_email";
///
///     fn run(self) -> Run {
///         println!("emailing {} about order {}", self.to, self.order_id);
///         Run::ok()
///     }
/// }
///
/// airlock::scope(|| airlock::enqueue(SendEmail { order_id: 7, to: "a@b.c".into() }))?;
/// # Ok::<(), airlock::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an airlock task",
    label = "not a task",
    note = "write the task as a function with `#[airlock::task]`, which generates the struct and implements `Task` for it"
)]
pub trait Task: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The stable name a worker finds this task by. Renaming the Rust type must
    /// not change it: payloads already in a queue refer to it.
    const NAME: &'static str;

    /// Whether [`run`](Task::run) returns a future to await ([`Run::Pending`]).
    /// Executors that run tasks on other threads read it to choose between a
    /// blocking thread and an async task.
    const IS_ASYNC: bool = false;

    /// The dispatch options an intent of this task starts with.
    fn default_options() -> DispatchOptions {
        DispatchOptions::default()
    }

    /// Performs the side effect: called by an executor once the intent has
    /// escaped its scope.
    fn run(self) -> Run;
}

/// What running a task produced: a result, or a future to await for it.
#[must_use = "a pending run does nothing until it is awaited"]
pub enum Run {
    /// A synchronous task ran to completion.
    Done(Result<(), BoxError>),
    /// An asynchronous task: the future performs the effect.
    Pending(BoxFuture<Result<(), BoxError>>),
}

impl Run {
    /// A successful synchronous run.
    pub fn ok() -> Self {
        Run::Done(Ok(()))
    }

    /// Wraps whatever a synchronous task function returned.
    pub fn done(output: impl TaskOutput) -> Self {
        Run::Done(output.into_task_result())
    }

    /// Wraps the future of an asynchronous task function.
    pub fn pending<F>(future: F) -> Self
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        Run::Pending(Box::pin(async move { future.await.into_task_result() }))
    }

    /// Drives the run to completion on the current thread, blocking on a pending
    /// future.
    ///
    /// The future is polled on this thread, outside any async runtime: an
    /// asynchronous task that needs one (for tokio's timers or sockets) must
    /// be awaited ([`finish`](Run::finish)) or run by an executor that
    /// provides it, such as `TokioExecutor`. With the `tokio` feature, inside
    /// a multi-thread tokio runtime the wait uses `block_in_place`, so the
    /// runtime keeps running; inside a current-thread runtime (the default of
    /// `#[tokio::test]`), where waiting would hang, a pending future is
    /// dropped unpolled and the run fails with an error that says so (also on
    /// that runtime's `spawn_blocking` threads, which tokio offers no way to
    /// tell apart from the thread that drives it). Without the feature, that
    /// wait blocks forever.
    ///
    /// # Errors
    ///
    /// The task's error, or the refusal to wait described above.
    #[inline]
    pub fn wait(self) -> Result<(), BoxError> {
        match self {
            Run::Done(result) => result,
            Run::Pending(future) => {
                crate::block_on::block_on(future).unwrap_or_else(|hang| Err(hang.into()))
            }
        }
    }

    /// Awaits the run.
    pub async fn finish(self) -> Result<(), BoxError> {
        match self {
            Run::Done(result) => result,
            Run::Pending(future) => future.await,
        }
    }

    /// The run as one boxed future.
    pub(crate) fn finish_boxed(self) -> BoxFuture<Result<(), BoxError>> {
        match self {
            Run::Done(result) => Box::pin(std::future::ready(result)),
            Run::Pending(future) => future,
        }
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Run::Done(result) => f.debug_tuple("Done").field(result).finish(),
            Run::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// What a task function may return: `()` or a `Result` whose error converts
/// into [`BoxError`] (`anyhow::Error`, `std::io::Error`, your own error types).
/// The `Ok` value is discarded: nobody waits for a side effect's return value.
#[diagnostic::on_unimplemented(
    message = "a task function cannot return `{Self}`",
    label = "return `()` or a `Result<T, E>` whose error converts into `Box<dyn Error + Send + Sync>`",
    note = "the task's result goes to an executor or a worker, which only needs to know whether it failed"
)]
pub trait TaskOutput {
    /// The run's result.
    fn into_task_result(self) -> Result<(), BoxError>;
}

impl TaskOutput for () {
    fn into_task_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<T, E: Into<BoxError>> TaskOutput for Result<T, E> {
    fn into_task_result(self) -> Result<(), BoxError> {
        self.map(drop).map_err(Into::into)
    }
}

/// How an intent wants to be dispatched: read by executors, ignored by the
/// inline executor.
///
/// A task declares defaults (`#[airlock::task(queue = "mail")]`); an intent can
/// override them with [`Intent::with_options`](crate::Intent::with_options).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use airlock::DispatchOptions;
///
/// let options = DispatchOptions::new()
///     .queue("mail")
///     .delay(Duration::from_secs(60))
///     .max_attempts(5)
///     .extra("tenant", "acme");
/// assert_eq!(options.queue.as_deref(), Some("mail"));
/// assert_eq!(options.extras["tenant"], "acme");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// The queue to send the intent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<Cow<'static, str>>,
    /// How long to wait before running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Higher runs first, where the executor supports priorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// How many times a worker may try it before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Free-form settings for a particular executor.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, serde_json::Value>,
}

impl DispatchOptions {
    /// No options set.
    pub const fn new() -> Self {
        DispatchOptions {
            queue: None,
            delay: None,
            priority: None,
            max_attempts: None,
            extras: BTreeMap::new(),
        }
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<Cow<'static, str>>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the maximum number of attempts.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Adds a free-form setting.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extras.insert(key.into(), value.into());
        self
    }

    /// Fills every option this one leaves unset from `fallback`.
    pub fn or(mut self, fallback: &DispatchOptions) -> Self {
        self.queue = self.queue.or_else(|| fallback.queue.clone());
        self.delay = self.delay.or(fallback.delay);
        self.priority = self.priority.or(fallback.priority);
        self.max_attempts = self.max_attempts.or(fallback.max_attempts);
        for (key, value) in &fallback.extras {
            self.extras
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        self
    }
}
