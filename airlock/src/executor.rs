//! Executors: HOW escaping intents run.

use crate::intent::Intent;
use crate::task::{BoxError, BoxFuture, Run};

/// Dispatches the intents that survived a flush, in order.
///
/// An executor receives a whole batch at once, so one that talks to a broker
/// can send a flush in one round trip. It may finish synchronously
/// ([`Dispatch::Done`]) or hand back a future ([`Dispatch::Pending`]) that an
/// async scope awaits (a synchronous scope blocks on it).
///
/// Fail fast (rule 7): on the first intent that cannot be dispatched, stop and
/// return a [`DispatchFailure`] that hands back every intent not dispatched.
/// An executor reads an intent's dispatch options with [`Intent::options`].
///
/// # Examples
///
/// An executor that appends intents to an outbox as JSON lines:
///
/// ```
/// use std::sync::Mutex;
/// use airlock::{Dispatch, Executor, Intent};
///
/// #[derive(Default)]
/// struct Outbox(Mutex<Vec<String>>);
///
/// impl Executor for Outbox {
///     fn dispatch(&self, intents: Vec<Intent>) -> Dispatch {
///         Dispatch::each(intents, |intent| {
///             let line = serde_json::json!({
///                 "task": intent.name(),
///                 "payload": intent.to_json()?,
///                 "queue": intent.options().queue,
///             });
///             self.0.lock().unwrap().push(line.to_string());
///             Ok(())
///         })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an airlock executor",
    label = "expected an executor",
    note = "use `InlineExecutor`, `TokioExecutor` (feature `tokio`), or implement `airlock::Executor`"
)]
pub trait Executor: Send + Sync + 'static {
    /// Dispatches `intents` in order.
    fn dispatch(&self, intents: Vec<Intent>) -> Dispatch;
}

impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    fn dispatch(&self, intents: Vec<Intent>) -> Dispatch {
        (**self).dispatch(intents)
    }
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn dispatch(&self, intents: Vec<Intent>) -> Dispatch {
        (**self).dispatch(intents)
    }
}

/// The result of [`Executor::dispatch`].
#[must_use = "a pending dispatch does nothing until it is awaited"]
pub enum Dispatch {
    /// The batch was dispatched, or failed, synchronously.
    Done(Result<(), DispatchFailure>),
    /// The batch is being dispatched by this future.
    Pending(BoxFuture<Result<(), DispatchFailure>>),
}

impl Dispatch {
    /// Dispatches each intent in turn with `send`, stopping at the first error
    /// and handing back the failed intent and those after it.
    pub fn each<F>(intents: Vec<Intent>, mut send: F) -> Dispatch
    where
        F: FnMut(&Intent) -> Result<(), BoxError>,
    {
        let mut intents = intents.into_iter();
        let mut dispatched = 0;
        while let Some(intent) = intents.next() {
            if let Err(error) = send(&intent) {
                return Dispatch::Done(Err(DispatchFailure {
                    dispatched,
                    failed_task: intent.name(),
                    failed: Some(intent),
                    error,
                    not_attempted: intents.collect(),
                }));
            }
            dispatched += 1;
        }
        Dispatch::Done(Ok(()))
    }

    pub(crate) fn wait(self) -> Result<(), DispatchFailure> {
        match self {
            Dispatch::Done(result) => result,
            Dispatch::Pending(future) => crate::block_on::block_on(future),
        }
    }
}

/// Why an executor stopped, and what it did not dispatch.
#[derive(Debug)]
pub struct DispatchFailure {
    /// How many intents from the front of the batch were dispatched.
    pub dispatched: usize,
    /// The name of the task that failed.
    pub failed_task: &'static str,
    /// The failed intent, if the executor still has it.
    pub failed: Option<Intent>,
    /// What went wrong.
    pub error: BoxError,
    /// The intents after the failed one, not attempted.
    pub not_attempted: Vec<Intent>,
}

/// Runs each task in place, in order, on the thread that flushes: the default
/// executor.
///
/// An asynchronous task is awaited where the scope is async; a synchronous
/// scope blocks on it without an async runtime, so async tasks that need one
/// belong with `TokioExecutor` (feature `tokio`) or an async scope.
///
/// When a task fails, the tasks after it are not run and are handed back in
/// the flush error. The failed task itself was moved into its call and is
/// reported by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct InlineExecutor;

impl Executor for InlineExecutor {
    fn dispatch(&self, intents: Vec<Intent>) -> Dispatch {
        let mut intents = intents.into_iter();
        let mut dispatched = 0;
        while let Some(intent) = intents.next() {
            let task = intent.name();
            match intent.run() {
                Run::Done(Ok(())) => dispatched += 1,
                Run::Done(Err(error)) => {
                    return Dispatch::Done(Err(failure(dispatched, task, error, intents)));
                }
                Run::Pending(future) => {
                    return Dispatch::Pending(Box::pin(run_rest_async(
                        dispatched, task, future, intents,
                    )));
                }
            }
        }
        Dispatch::Done(Ok(()))
    }
}

fn failure(
    dispatched: usize,
    failed_task: &'static str,
    error: BoxError,
    rest: std::vec::IntoIter<Intent>,
) -> DispatchFailure {
    DispatchFailure {
        dispatched,
        failed_task,
        failed: None,
        error,
        not_attempted: rest.collect(),
    }
}

/// The inline executor after its first asynchronous task: await each in turn.
async fn run_rest_async(
    mut dispatched: usize,
    task: &'static str,
    first: BoxFuture<Result<(), BoxError>>,
    mut rest: std::vec::IntoIter<Intent>,
) -> Result<(), DispatchFailure> {
    if let Err(error) = first.await {
        return Err(failure(dispatched, task, error, rest));
    }
    dispatched += 1;
    while let Some(intent) = rest.next() {
        let task = intent.name();
        if let Err(error) = intent.run().finish().await {
            return Err(failure(dispatched, task, error, rest));
        }
        dispatched += 1;
    }
    Ok(())
}

#[cfg(feature = "tokio")]
pub use self::tokio_executor::TokioExecutor;

#[cfg(feature = "tokio")]
mod tokio_executor {
    use super::{Dispatch, DispatchFailure, Executor};
    use crate::intent::Intent;
    use tokio::runtime::Handle;

    /// Runs each escaping intent as its own tokio task: async tasks with
    /// `spawn`, synchronous ones with `spawn_blocking` so they cannot stall the
    /// runtime's workers.
    ///
    /// Dispatch means "spawned": the flush does not wait for the tasks, and a
    /// task that fails is logged through `tracing` (target `airlock`, `ERROR`)
    /// with its name and error. Flushing with no runtime to spawn on fails and
    /// hands back every intent.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> airlock::Result<()> {
    /// use airlock::{Scope, TokioExecutor};
    ///
    /// Scope::new()
    ///     .executor(TokioExecutor::current())
    ///     .run_async(async { Ok::<_, airlock::Error>(()) })
    ///     .await
    /// # }
    /// ```
    #[derive(Clone, Debug, Default)]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub struct TokioExecutor {
        handle: Option<Handle>,
    }

    impl TokioExecutor {
        /// Spawns on the runtime the flush runs in.
        pub fn current() -> Self {
            TokioExecutor { handle: None }
        }

        /// Spawns on the given runtime, wherever the flush runs.
        pub fn new(handle: Handle) -> Self {
            TokioExecutor {
                handle: Some(handle),
            }
        }
    }

    impl Executor for TokioExecutor {
        fn dispatch(&self, intents: Vec<Intent>) -> Dispatch {
            let handle = match self.handle.clone().map_or_else(Handle::try_current, Ok) {
                Ok(handle) => handle,
                Err(error) => {
                    let mut intents = intents.into_iter();
                    let first = intents.next();
                    return Dispatch::Done(Err(DispatchFailure {
                        dispatched: 0,
                        failed_task: first.as_ref().map_or("?", Intent::name),
                        failed: first,
                        error: format!(
                            "TokioExecutor found no tokio runtime ({error}): flush inside a \
                             runtime or build it with TokioExecutor::new(handle)"
                        )
                        .into(),
                        not_attempted: intents.collect(),
                    }));
                }
            };
            for intent in intents {
                let task = intent.name();
                let report = move |result: Result<(), crate::BoxError>| {
                    if let Err(error) = result {
                        tracing::error!(target: "airlock", task, %error, "task failed");
                    }
                };
                if intent.is_async() {
                    handle.spawn(async move { report(intent.run().finish().await) });
                } else {
                    handle.spawn_blocking(move || report(intent.run().wait()));
                }
            }
            Dispatch::Done(Ok(()))
        }
    }
}
