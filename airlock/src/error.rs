//! The one error type.

use std::fmt;

use crate::intent::Intent;
use crate::report::FlushReport;
use crate::task::BoxError;

/// `Result` with airlock's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. Each message names the task involved and says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `enqueue` was called with no scope current (rule 1). Nothing ran.
    #[error(
        "cannot enqueue `{task}`: no airlock scope is active here. Run this code inside \
         `airlock::scope(|| ...)`, `airlock::Scope::new().run(...)` or a `#[airlock::scoped]` \
         function; on a spawned thread or task, carry the scope there with `airlock::handle()`"
    )]
    NoScope {
        /// The task that was not enqueued.
        task: &'static str,
        /// The refused intent, handed back ([`Error::into_undispatched`]).
        intent: Box<Intent>,
    },

    /// `enqueue` was called from inside a policy or scope hook (rule 4).
    #[error(
        "cannot enqueue `{task}` from inside a policy or scope hook: hooks filter and observe \
         intents, they cannot add new ones. Enqueue it from the code that runs in the scope instead"
    )]
    EnqueueInHook {
        /// The task that was not enqueued.
        task: &'static str,
        /// The refused intent, handed back ([`Error::into_undispatched`]).
        intent: Box<Intent>,
    },

    /// A policy rejected the intent at enqueue (rule 5). It was not buffered.
    #[error("policy `{policy}` rejected `{task}`: {violation}")]
    PolicyViolation {
        /// The task that was rejected.
        task: &'static str,
        /// The policy that rejected it.
        policy: &'static str,
        /// The policy's reason (part of this error's message, not a
        /// separate source).
        violation: crate::policy::Violation,
        /// The refused intent, handed back ([`Error::into_undispatched`]).
        intent: Box<Intent>,
    },

    /// A scope was used in a way its lifecycle does not allow (rule 12).
    #[error("{0}")]
    State(#[from] StateError),

    /// The executor failed part-way through a flush (rule 7). The error holds
    /// the intents that were not dispatched.
    #[error(transparent)]
    Dispatch(Box<DispatchError>),

    /// A task run by name (a worker's [`run_json`](crate::registry::run_json))
    /// returned an error.
    #[error("task `{task}` failed")]
    TaskFailed {
        /// The task that failed.
        task: &'static str,
        /// Its error.
        #[source]
        source: crate::task::BoxError,
    },

    /// A task registry lookup failed: see [`RegistryError`](crate::RegistryError).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

impl Error {
    /// The task the error is about, where there is one.
    pub fn task(&self) -> Option<&str> {
        match self {
            Error::NoScope { task, .. }
            | Error::EnqueueInHook { task, .. }
            | Error::PolicyViolation { task, .. }
            | Error::TaskFailed { task, .. } => Some(task),
            Error::State(state) => state.task,
            Error::Dispatch(dispatch) => Some(dispatch.failed_task),
            Error::Registry(registry) => registry.task(),
        }
    }

    /// The intents this error hands back, so they can be retried or
    /// persisted: those a failed flush did not dispatch, or the one an
    /// enqueue refused (no scope, inside a hook, rejected by a policy, an
    /// ended handle), as [`std::sync::mpsc::SendError`] hands back its
    /// value. Empty for errors that hold no intent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use airlock::{Run, Task};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)] struct Ping { n: u32 }
    /// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
    /// let error = airlock::enqueue(Ping { n: 7 }).unwrap_err();
    /// let back = error.into_undispatched();
    /// assert_eq!(back[0].payload(), Some(&Ping { n: 7 }));
    /// ```
    pub fn into_undispatched(self) -> Vec<Intent> {
        match self {
            Error::Dispatch(dispatch) => dispatch.into_undispatched(),
            Error::NoScope { intent, .. }
            | Error::EnqueueInHook { intent, .. }
            | Error::PolicyViolation { intent, .. } => vec![*intent],
            Error::State(state) => state.intent.map(|intent| *intent).into_iter().collect(),
            Error::TaskFailed { .. } | Error::Registry(_) => Vec::new(),
        }
    }
}

impl From<DispatchError> for Error {
    fn from(error: DispatchError) -> Self {
        Error::Dispatch(Box::new(error))
    }
}

/// Lets `?` carry an airlock error out of functions that return `io::Result`.
impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        std::io::Error::other(error)
    }
}

/// What was wrong with a scope's lifecycle.
#[derive(Debug, Clone)]
pub struct StateError {
    pub(crate) task: Option<&'static str>,
    pub(crate) kind: StateErrorKind,
    /// The intent an ended handle refused, handed back.
    pub(crate) intent: Option<Box<Intent>>,
}

/// Compares what went wrong, not the intent handed back.
impl PartialEq for StateError {
    fn eq(&self, other: &Self) -> bool {
        self.task == other.task && self.kind == other.kind
    }
}

impl Eq for StateError {}

/// The lifecycle rule a [`StateError`] broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateErrorKind {
    /// `flush` or `discard` on a scope that is still current.
    StillCurrent,
    /// `exit` on a scope that is not the current one.
    NotCurrent,
    /// `flush` or `discard` after the scope was flushed.
    AlreadyFlushed,
    /// `flush` or `discard` after the scope was discarded.
    AlreadyDiscarded,
    /// `flush` after an earlier flush of this scope failed.
    FlushFailed,
    /// `flush` after an earlier `flush_async` of this scope was cancelled
    /// while dispatching.
    FlushCancelled,
    /// An enqueue through a handle whose scope has ended.
    Ended,
    /// A scope opened, or a handle taken, from inside a policy or scope hook.
    InHook,
    /// A handle asked for where no scope is current.
    NoScope,
    /// `flush` of an `ActiveScope` whose enclosing scope is no longer the
    /// current one.
    EnclosingNotCurrent,
}

impl StateError {
    pub(crate) fn new(kind: StateErrorKind) -> Self {
        StateError {
            task: None,
            kind,
            intent: None,
        }
    }

    pub(crate) fn for_task(kind: StateErrorKind, task: &'static str) -> Self {
        StateError {
            task: Some(task),
            kind,
            intent: None,
        }
    }

    /// An ended handle's refusal of `intent`, which the error hands back.
    pub(crate) fn ended(intent: Intent) -> Self {
        StateError {
            task: Some(intent.name()),
            kind: StateErrorKind::Ended,
            intent: Some(Box::new(intent)),
        }
    }

    /// Which rule was broken.
    pub fn kind(&self) -> StateErrorKind {
        self.kind
    }

    /// The intent an ended handle refused, if this is that error.
    pub fn intent(&self) -> Option<&Intent> {
        self.intent.as_deref()
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StateErrorKind::*;
        match self.kind {
            StillCurrent => f.write_str(
                "the scope is still current: call `exit()` before `flush()` or `discard()`",
            ),
            NotCurrent => f.write_str(
                "the scope is not the current scope: exit the scopes entered after it first",
            ),
            AlreadyFlushed => f.write_str("the scope was already flushed: a scope flushes once"),
            AlreadyDiscarded => f.write_str(
                "the scope was discarded: its intents are gone and it cannot be flushed",
            ),
            FlushCancelled => f.write_str(
                "an earlier `flush_async` of this scope was cancelled while its executor was \
                 dispatching: the intents it had not dispatched went to the undelivered hook \
                 (`Defaults::on_undelivered`); the scope cannot be flushed again",
            ),
            FlushFailed => f.write_str(
                "an earlier flush of this scope failed: the undispatched intents were handed back \
                 in that error (`Error::into_undispatched`); retry them in a new scope",
            ),
            Ended => write!(
                f,
                "cannot enqueue `{}`: the scope this handle refers to has already ended, so the \
                 intent was not buffered (it is handed back by `Error::into_undispatched`). Keep \
                 the scope open until the spawned work finishes (join it before the scope returns)",
                self.task.unwrap_or("?")
            ),
            EnclosingNotCurrent => f.write_str(
                "the scope this one was entered in is no longer current, so its intents have \
                 nowhere to go: flush (or discard) a nested scope before exiting the scope \
                 around it",
            ),
            NoScope => f.write_str(
                "no airlock scope is active here to take a handle to: call `airlock::handle()` \
                 inside the scope whose intents the spawned work should join",
            ),
            InHook => f.write_str(
                "cannot open a scope or take a scope handle inside a policy or scope hook: \
                 hooks only judge intents",
            ),
        }
    }
}

impl std::error::Error for StateError {}

/// An executor failed part-way through a flush.
///
/// Intents before the failed one were dispatched; the failed one and those
/// after it were not (fail fast). They are handed back here.
#[derive(Debug)]
pub struct DispatchError {
    pub(crate) report: FlushReport,
    pub(crate) failed_task: &'static str,
    pub(crate) source: BoxError,
    pub(crate) failed: Option<Intent>,
    pub(crate) undispatched: Vec<Intent>,
}

impl DispatchError {
    /// What happened before the failure: the intents that were dispatched and
    /// those the policies dropped.
    pub fn report(&self) -> &FlushReport {
        &self.report
    }

    /// The name of the task that failed.
    pub fn failed_task(&self) -> &'static str {
        self.failed_task
    }

    /// The failed intent, when the executor handed it back: the built-in
    /// executors and [`Dispatch::each`](crate::Dispatch::each) always do; a
    /// custom executor that consumed it cannot.
    pub fn failed(&self) -> Option<&Intent> {
        self.failed.as_ref()
    }

    /// The intents after the failed one, which were not attempted.
    pub fn not_attempted(&self) -> &[Intent] {
        &self.undispatched
    }

    /// Every intent that was not dispatched, in order: the failed one (where
    /// available), then those not attempted.
    pub fn into_undispatched(self) -> Vec<Intent> {
        let mut intents = Vec::with_capacity(self.undispatched.len() + 1);
        intents.extend(self.failed);
        intents.extend(self.undispatched);
        intents
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dispatching `{}` failed after {} intent(s) were dispatched",
            self.failed_task,
            self.report.dispatched_count(),
        )?;
        let left = self.undispatched.len() + usize::from(self.failed.is_some());
        if left > 0 {
            write!(
                f,
                "; {left} intent(s) were not dispatched and are handed back by \
                 `Error::into_undispatched()` to retry or persist"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for DispatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
