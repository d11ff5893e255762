//! `TokioExecutor`: escaping intents as tokio tasks (feature `tokio`).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;

use crate::config::Defaults;
use crate::executor::{Dispatch, DispatchFailure, Executor, Intents, run_guarded};
use crate::intent::Intent;
use crate::task::BoxError;
use crate::undelivered::{Hook, Undelivered, deliver_to};

/// Runs each escaping intent as its own tokio task: async tasks with
/// `spawn`, synchronous ones with `spawn_blocking` so they cannot stall the
/// runtime's workers.
///
/// Dispatch means "spawned": the flush does not wait for the tasks. What
/// happens to each intent after that:
///
/// - **Spawning fails** (no runtime to spawn on, a runtime that has shut
///   down, so tokio cancels the task at once, or a panic in `spawn`): the
///   flush fails and hands back that intent and the rest
///   ([`Error::into_undispatched`](crate::Error::into_undispatched)). The
///   intents spawned before it stay spawned.
/// - **The task fails or panics**: no caller is left to take it back, so a
///   copy of its intent (taken before it ran) goes to the
///   [undelivered hook](crate::Undelivered) with the error. The hook is the
///   one in force on the thread that flushed (a
///   [`with_defaults`](crate::with_defaults) override, else the process-wide
///   defaults), captured at dispatch.
/// - **The task is cancelled after the flush returned** (its runtime shut
///   down before it started or finished): its intent goes to the undelivered
///   hook too. One that had started may have had part of its effect.
/// - **[`shutdown`](TokioExecutor::shutdown)** stops new dispatches and
///   waits, up to a deadline, for the tasks in flight; it returns a
///   [`DrainReport`] naming the ones that failed and handing back the ones
///   that did not finish.
///
/// Clones share their tasks: shutting down one clone shuts down all. Keep a
/// clone to call [`shutdown`](TokioExecutor::shutdown) on before the service
/// exits.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> airlock::Result<()> {
/// use std::time::Duration;
/// use airlock::{Scope, TokioExecutor};
///
/// let executor = TokioExecutor::current();
/// Scope::new()
///     .executor(executor.clone())
///     .run_async(async { Ok::<_, airlock::Error>(()) })
///     .await?;
///
/// // Before exiting: wait for the effects in flight.
/// let report = executor.shutdown(Duration::from_secs(5)).await;
/// assert!(report.is_clean());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct TokioExecutor {
    handle: Option<Handle>,
    shared: Arc<Shared>,
}

/// What the clones of one executor share: its tasks.
#[derive(Default)]
struct Shared {
    tracker: TaskTracker,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// The tasks spawned and not finished, by spawn order.
    in_flight: BTreeMap<u64, InFlight>,
    /// What finished while `shutdown` waited, while it does.
    draining: Option<DrainReport>,
}

/// A task spawned and not finished. Whoever removes it from the map owns its
/// intent: the task (to report its failure), the dispatch (to hand it back),
/// or `shutdown` (to hand it back in its report).
struct InFlight {
    /// A copy of the task's intent, taken before it runs.
    intent: Intent,
    /// Whether the task has started running.
    started: bool,
    /// Whether its dispatch has returned: a cancellation from then on goes to
    /// the hook, since no caller can take the intent back.
    detached: bool,
    /// Cancelled before it started, while its dispatch could hand it back.
    cancelled: bool,
    abort: Option<AbortHandle>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, intent: Intent) -> u64 {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.in_flight.insert(
            id,
            InFlight {
                intent,
                started: false,
                detached: false,
                cancelled: false,
                abort: None,
            },
        );
        id
    }

    /// After `spawn` returned: the intent back if tokio cancelled the task
    /// before it started (its runtime is shut down), else `None`.
    fn confirm(&self, id: u64, abort: AbortHandle) -> Option<Intent> {
        let mut state = self.state();
        let entry = state.in_flight.get_mut(&id)?;
        if entry.cancelled {
            return state.in_flight.remove(&id).map(|entry| entry.intent);
        }
        entry.detached = true;
        entry.abort = Some(abort);
        None
    }

    /// After `spawn` panicked: the intent back, whatever became of the task.
    fn withdraw(&self, id: u64) -> Option<Intent> {
        let entry = self.state().in_flight.remove(&id)?;
        if let Some(abort) = entry.abort {
            abort.abort();
        }
        Some(entry.intent)
    }
}

/// The spawned side of one in-flight entry: settles it when the task ends,
/// or, dropped before that, when the task is cancelled.
struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    task: &'static str,
    /// The undelivered hook in force where the flush ran.
    hook: Option<Hook>,
    settled: bool,
}

impl Ticket {
    async fn run_async(mut self, intent: Intent) {
        self.start();
        let result = run_guarded(&intent).finish().await;
        self.settle(result);
    }

    fn run_blocking(mut self, intent: Intent) {
        self.start();
        let result = run_guarded(&intent).wait();
        self.settle(result);
    }

    fn start(&self) {
        if let Some(entry) = self.shared.state().in_flight.get_mut(&self.id) {
            entry.started = true;
        }
    }

    fn settle(&mut self, result: Result<(), BoxError>) {
        self.settled = true;
        let mut state = self.shared.state();
        // Gone when `shutdown` gave up on it and handed it back.
        let entry = state.in_flight.remove(&self.id);
        let error = match result {
            Ok(()) => {
                if let Some(report) = &mut state.draining {
                    report.completed += 1;
                }
                return;
            }
            Err(error) => error,
        };
        if let Some(report) = &mut state.draining {
            report.failed.push(FailedTask {
                task: self.task,
                error: error.to_string(),
            });
        }
        drop(state);
        if let Some(entry) = entry {
            deliver_to(
                self.hook.as_ref(),
                Undelivered::new(
                    vec![entry.intent],
                    "the task failed after TokioExecutor spawned it",
                )
                .with_error(error),
            );
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Cancelled: the runtime shut down, or `shutdown` aborted it.
        let mut state = self.shared.state();
        let Some(entry) = state.in_flight.get_mut(&self.id) else {
            return;
        };
        if !entry.started && !entry.detached {
            // Still inside `dispatch`, which hands it back.
            entry.cancelled = true;
            return;
        }
        let started = entry.started;
        let entry = state.in_flight.remove(&self.id).expect("looked up above");
        drop(state);
        let cause = if started {
            "the task was cancelled before it finished (its tokio runtime shut down): \
             it may have had part of its effect"
        } else {
            "the task was cancelled before it started (its tokio runtime shut down)"
        };
        deliver_to(
            self.hook.as_ref(),
            Undelivered::new(vec![entry.intent], cause),
        );
    }
}

impl TokioExecutor {
    /// Spawns on the runtime the flush runs in.
    pub fn current() -> Self {
        TokioExecutor::default()
    }

    /// Spawns on the given runtime, wherever the flush runs. Once that
    /// runtime has shut down, a flush fails and hands its intents back.
    pub fn new(handle: Handle) -> Self {
        TokioExecutor {
            handle: Some(handle),
            shared: Arc::default(),
        }
    }

    /// How many tasks this executor (and its clones) spawned that have not
    /// finished.
    pub fn in_flight(&self) -> usize {
        self.shared.state().in_flight.len()
    }

    /// Stops taking new intents and waits up to `timeout` for the tasks in
    /// flight to finish: call it before a service exits, so the effects it
    /// already promised are not lost with the runtime.
    ///
    /// A flush with this executor (or a clone of it) after `shutdown` fails
    /// and hands back every intent. The report counts the tasks that
    /// completed while it waited, names those that failed (their intents went
    /// to the undelivered hook, as always), and hands back those that did not
    /// finish in time: those are aborted (a synchronous one already running
    /// on a blocking thread cannot be stopped and may still complete) and
    /// never reach the hook, so the caller owns them, to persist or retry.
    ///
    /// # Panics
    ///
    /// If the runtime it is awaited on has no timer (a runtime built without
    /// `enable_time` or `enable_all`), as `tokio::time::timeout` does.
    pub async fn shutdown(&self, timeout: Duration) -> DrainReport {
        self.shared
            .state()
            .draining
            .get_or_insert_with(DrainReport::default);
        self.shared.tracker.close();
        let _ = tokio::time::timeout(timeout, self.shared.tracker.wait()).await;
        let (mut report, unfinished) = {
            let mut state = self.shared.state();
            let report = state.draining.take().unwrap_or_default();
            (report, std::mem::take(&mut state.in_flight))
        };
        // Outside the lock: a cancelled task settles its entry (gone now).
        for (_, entry) in unfinished {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
            report.unfinished.push(entry.intent);
        }
        report
    }

    /// Spawns one task, tracked.
    fn spawn(&self, handle: &Handle, intent: Intent, ticket: Ticket) -> JoinHandle<()> {
        let tracker = &self.shared.tracker;
        if intent.is_async() {
            tracker.spawn_on(ticket.run_async(intent), handle)
        } else {
            tracker.spawn_blocking_on(move || ticket.run_blocking(intent), handle)
        }
    }
}

impl Executor for TokioExecutor {
    fn dispatch(&self, mut intents: Intents) -> Dispatch {
        let refuse = |intents: Intents, error: String| {
            let mut intents = intents.into_vec().into_iter();
            Dispatch::Done(match intents.next() {
                Some(first) => Err(DispatchFailure::new(0, first, error, intents)),
                None => Ok(()),
            })
        };
        if self.shared.tracker.is_closed() {
            return refuse(
                intents,
                "this TokioExecutor was shut down (`TokioExecutor::shutdown`): dispatch with a \
                 new one"
                    .to_owned(),
            );
        }
        let handle = match self.handle.clone().map_or_else(Handle::try_current, Ok) {
            Ok(handle) => handle,
            Err(error) => {
                return refuse(
                    intents,
                    format!(
                        "TokioExecutor found no tokio runtime ({error}): flush inside a \
                         runtime or build it with TokioExecutor::new(handle)"
                    ),
                );
            }
        };
        let hook = crate::context::try_with_defaults_ref(Defaults::undelivered_hook).flatten();
        let mut dispatched = 0;
        while let Some(intent) = intents.next() {
            let task = intent.name();
            let id = self.shared.register(intent.clone());
            let ticket = Ticket {
                shared: self.shared.clone(),
                id,
                task,
                hook: hook.clone(),
                settled: false,
            };
            let spawned = catch_unwind(AssertUnwindSafe(|| self.spawn(&handle, intent, ticket)));
            let (back, error) = match spawned {
                Ok(join) => match self.shared.confirm(id, join.abort_handle()) {
                    None => {
                        dispatched += 1;
                        continue;
                    }
                    Some(back) => (
                        back,
                        format!(
                            "the tokio runtime is shut down: tokio cancelled `{task}` as it was \
                             spawned, so it never ran. Flush while the runtime runs, or with a \
                             TokioExecutor on a running runtime"
                        ),
                    ),
                },
                Err(panic) => match self.shared.withdraw(id) {
                    // It ran all the same.
                    None => {
                        dispatched += 1;
                        continue;
                    }
                    Some(back) => (
                        back,
                        format!("tokio could not spawn `{task}`: {}", panic_message(&*panic)),
                    ),
                },
            };
            return Dispatch::Done(Err(DispatchFailure::new(dispatched, back, error, intents)));
        }
        Dispatch::Done(Ok(()))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("it panicked")
}

impl fmt::Debug for TokioExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioExecutor")
            .field("handle", &self.handle)
            .field("in_flight", &self.in_flight())
            .field("shut_down", &self.shared.tracker.is_closed())
            .finish()
    }
}

/// What [`TokioExecutor::shutdown`] found while it waited for the tasks in
/// flight.
///
/// Every task in flight when the wait began ends in exactly one of: it
/// [completed](DrainReport::completed), it [failed](DrainReport::failed) (its
/// intent went to the undelivered hook), or it did not finish by the deadline
/// and is [handed back](DrainReport::into_unfinished) here.
#[derive(Debug, Default)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct DrainReport {
    completed: usize,
    failed: Vec<FailedTask>,
    unfinished: Vec<Intent>,
}

impl DrainReport {
    /// How many tasks completed successfully while `shutdown` waited.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// The tasks that failed or panicked while `shutdown` waited. Their
    /// intents went to the undelivered hook.
    pub fn failed(&self) -> &[FailedTask] {
        &self.failed
    }

    /// The intents of the tasks that did not finish by the deadline, in the
    /// order they were spawned.
    pub fn unfinished(&self) -> &[Intent] {
        &self.unfinished
    }

    /// Takes the unfinished intents, to persist or retry them.
    pub fn into_unfinished(self) -> Vec<Intent> {
        self.unfinished
    }

    /// Whether nothing failed and everything finished in time.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.unfinished.is_empty()
    }
}

/// A task that failed while [`TokioExecutor::shutdown`] waited for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct FailedTask {
    task: &'static str,
    error: String,
}

impl FailedTask {
    /// The task's name.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// Its error, or the message it panicked with.
    pub fn error(&self) -> &str {
        &self.error
    }
}
