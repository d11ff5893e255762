//! Executors: HOW escaping intents run.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::intent::Intent;
use crate::task::{BoxError, BoxFuture, Run};
use crate::undelivered::{Undelivered, undelivered};

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
/// The batch comes as [`Intents`], which guards what it still holds: intents
/// neither taken out of it nor handed back (the executor panicked, or its
/// pending dispatch was dropped because the flush was cancelled) go to the
/// [undelivered hook](crate::Undelivered) when it is dropped.
///
/// # Examples
///
/// An executor that appends intents to an outbox as JSON lines:
///
/// ```
/// use std::sync::Mutex;
/// use airlock::{Dispatch, Executor, Intents};
///
/// #[derive(Default)]
/// struct Outbox(Mutex<Vec<String>>);
///
/// impl Executor for Outbox {
///     fn dispatch(&self, intents: Intents) -> Dispatch {
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
    fn dispatch(&self, intents: Intents) -> Dispatch;
}

impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        (**self).dispatch(intents)
    }
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        (**self).dispatch(intents)
    }
}

/// The batch an [`Executor`] dispatches: the intents that survived a flush,
/// in order.
///
/// Read it as a slice (`intents.len()`, `intents.iter()`), take intents out
/// in order by iterating it, or take them all with [`into_vec`](Intents::into_vec).
/// What is still inside when it is dropped was neither dispatched nor handed
/// back: it goes to the [undelivered hook](crate::Undelivered), so an
/// executor that panics, or a pending dispatch that is cancelled, loses
/// nothing silently.
pub struct Intents {
    rest: std::vec::IntoIter<Intent>,
}

impl Intents {
    /// Wraps intents for an executor (to call one from another executor, or
    /// in a test).
    pub fn new(intents: Vec<Intent>) -> Self {
        Intents {
            rest: intents.into_iter(),
        }
    }

    /// The intents not yet taken out, in order.
    pub fn as_slice(&self) -> &[Intent] {
        self.rest.as_slice()
    }

    /// Takes every intent not yet taken out: the caller is now responsible
    /// for each one.
    pub fn into_vec(mut self) -> Vec<Intent> {
        std::mem::take(&mut self.rest).collect()
    }
}

impl From<Vec<Intent>> for Intents {
    fn from(intents: Vec<Intent>) -> Self {
        Intents::new(intents)
    }
}

impl std::ops::Deref for Intents {
    type Target = [Intent];

    fn deref(&self) -> &[Intent] {
        self.as_slice()
    }
}

impl Iterator for Intents {
    type Item = Intent;

    fn next(&mut self) -> Option<Intent> {
        self.rest.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rest.size_hint()
    }
}

impl ExactSizeIterator for Intents {}

impl<'a> IntoIterator for &'a Intents {
    type Item = &'a Intent;
    type IntoIter = std::slice::Iter<'a, Intent>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl Drop for Intents {
    fn drop(&mut self) {
        if self.rest.len() == 0 {
            return;
        }
        let cause = if std::thread::panicking() {
            "the executor panicked before dispatching these intents"
        } else {
            "the dispatch ended before these intents were dispatched or handed back \
             (it was cancelled, or the executor dropped them)"
        };
        undelivered(Undelivered::new(
            std::mem::take(&mut self.rest).collect(),
            cause,
        ));
    }
}

impl fmt::Debug for Intents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
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
    pub fn each<F>(mut intents: Intents, mut send: F) -> Dispatch
    where
        F: FnMut(&Intent) -> Result<(), BoxError>,
    {
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

    /// Waits for the dispatch on this thread. A pending one that cannot be
    /// waited for here without hanging is dropped unpolled (the intents it
    /// holds go to the undelivered hook) and the failure names `first_task`.
    pub(crate) fn wait(self, first_task: &'static str) -> Result<(), DispatchFailure> {
        match self {
            Dispatch::Done(result) => result,
            Dispatch::Pending(future) => crate::block_on::block_on(future).unwrap_or_else(|hang| {
                Err(DispatchFailure {
                    dispatched: 0,
                    failed_task: first_task,
                    failed: None,
                    error: format!(
                        "the executor's asynchronous dispatch was {hang}. The intents it held \
                             went to the undelivered hook"
                    )
                    .into(),
                    not_attempted: Vec::new(),
                })
            }),
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

impl DispatchFailure {
    /// A failure of `failed` (still held, so it is handed back), with `rest`
    /// not attempted.
    pub fn new(
        dispatched: usize,
        failed: Intent,
        error: impl Into<BoxError>,
        rest: impl IntoIterator<Item = Intent>,
    ) -> Self {
        DispatchFailure {
            dispatched,
            failed_task: failed.name(),
            failed: Some(failed),
            error: error.into(),
            not_attempted: rest.into_iter().collect(),
        }
    }
}

/// Runs each task in place, in order, on the thread that flushes: the default
/// executor.
///
/// An asynchronous task is awaited where the scope is async; a synchronous
/// scope blocks on it without an async runtime, so async tasks that need one
/// belong with `TokioExecutor` (feature `tokio`) or an async scope. With the
/// `tokio` feature, a synchronous scope inside a multi-thread runtime waits
/// with `block_in_place`, and inside a current-thread runtime (where
/// blocking would hang) it refuses: the flush fails, naming the task and
/// handing it back with the rest.
///
/// When a task fails (returns an error or panics), the tasks after it are not
/// run and are handed back in the flush error with the failed one: each task
/// runs as a clone of its payload (made on the stack) while the intent stays
/// whole, so [`DispatchError::failed`](crate::DispatchError::failed) can be
/// retried. A panic becomes that error; it does not unwind through the
/// flush.
#[derive(Clone, Copy, Debug, Default)]
pub struct InlineExecutor;

impl Executor for InlineExecutor {
    fn dispatch(&self, mut intents: Intents) -> Dispatch {
        let mut dispatched = 0;
        while let Some(intent) = intents.next() {
            match run_guarded(&intent) {
                Run::Done(Ok(())) => dispatched += 1,
                Run::Done(Err(error)) => {
                    return Dispatch::Done(Err(DispatchFailure::new(
                        dispatched, intent, error, intents,
                    )));
                }
                Run::Pending(future) => {
                    // Guarded from here: dropped before its first poll, the
                    // dispatch still reports the task it was about to run.
                    let current = InFlight(Some(intent));
                    return Dispatch::Pending(Box::pin(run_rest_async(
                        dispatched, current, future, intents,
                    )));
                }
            }
        }
        Dispatch::Done(Ok(()))
    }
}

/// Runs a clone of a task (the intent stays whole, to be handed back if the
/// run fails), turning a panic into its error.
pub(crate) fn run_guarded(intent: &Intent) -> Run {
    let task = intent.name();
    match catch_unwind(AssertUnwindSafe(|| intent.run_cloned())) {
        Ok(Run::Done(result)) => Run::Done(result),
        Ok(Run::Pending(future)) => Run::Pending(Box::pin(CatchPanic { future, task })),
        Err(panic) => Run::Done(Err(panicked(task, &*panic))),
    }
}

/// The error for a task that panicked, with the panic's message.
pub(crate) fn panicked(task: &'static str, panic: &(dyn std::any::Any + Send)) -> BoxError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    format!("task `{task}` panicked: {message}").into()
}

/// An asynchronous task whose panics become its error.
struct CatchPanic {
    future: BoxFuture<Result<(), BoxError>>,
    task: &'static str,
}

impl Future for CatchPanic {
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = self.task;
        match catch_unwind(AssertUnwindSafe(|| self.future.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(panicked(task, &*panic))),
        }
    }
}

/// The inline executor after its first asynchronous task: await each in turn.
/// Dropped part way (the flush was cancelled), the intents it has not run go
/// to the undelivered hook with `rest`, and so does the one it was running.
async fn run_rest_async(
    mut dispatched: usize,
    mut current: InFlight,
    first: BoxFuture<Result<(), BoxError>>,
    mut rest: Intents,
) -> Result<(), DispatchFailure> {
    let mut running = first;
    loop {
        let result = running.await;
        let kept = current.0.take().expect("one task runs at a time");
        if let Err(error) = result {
            return Err(DispatchFailure::new(dispatched, kept, error, rest));
        }
        dispatched += 1;
        let Some(intent) = rest.next() else {
            return Ok(());
        };
        running = run_guarded(&intent).finish_boxed();
        current.0 = Some(intent);
    }
}

/// The task an asynchronous dispatch is running, for the undelivered hook if
/// the dispatch is dropped before the task finishes.
struct InFlight(Option<Intent>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(intent) = self.0.take() {
            undelivered(Undelivered::new(
                vec![intent],
                "the dispatch was cancelled while this task was running: it may have had \
                 part of its effect",
            ));
        }
    }
}

#[cfg(feature = "tokio")]
pub use crate::tokio_executor::TokioExecutor;
