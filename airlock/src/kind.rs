//! Scope kinds: WHEN a scope's intents escape.

use std::any::Any;
use std::sync::Arc;

use crate::error::{DispatchError, Error, Result};
use crate::executor::{Dispatch, DispatchFailure, Executor, InlineExecutor, Intents};
use crate::intent::Intent;
use crate::report::FlushReport;
use crate::undelivered::Undelivered;

/// How a scope's body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// A normal return, or `Ok`.
    Success,
    /// `Err` (or whatever an [`Outcome`](crate::Outcome) counts as failure).
    Failure,
    /// The body panicked. Discards unless the kind's
    /// [`should_flush`](ScopeKind::should_flush) says otherwise; the panic
    /// then goes on unwinding.
    Panic,
    /// An async scope's future (or an `ActiveScope`) was dropped before it
    /// completed. Discards unless the kind says otherwise.
    Cancelled,
}

/// Which of a descendant's intents it may dispatch itself; the rest are
/// captured into the ancestor that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Capture them all (the default: the outermost scope decides).
    None,
    /// Let them all through to the next ancestor, or to dispatch.
    All,
    /// Let through the intents at these indices; capture the others.
    Only(Vec<usize>),
}

/// The scope whose intents an ancestor is asked about.
#[derive(Clone, Copy)]
pub struct Descendant<'a> {
    pub(crate) kind: Option<&'a dyn ScopeKind>,
}

impl<'a> Descendant<'a> {
    /// The exiting scope's kind, if it is a `K`.
    pub fn kind<K: ScopeKind>(&self) -> Option<&'a K> {
        let any: &dyn Any = self.kind?;
        any.downcast_ref()
    }

    /// Whether the exiting scope is a plain scope (no custom kind).
    pub fn is_plain(&self) -> bool {
        self.kind.is_none()
    }
}

/// Customizes WHEN a scope lets its intents escape.
///
/// Every hook has the behaviour of a plain scope as its default: flush on
/// success, capture every descendant's intents, dispatch right away.
///
/// # Examples
///
/// A scope that flushes even when its body fails (for alerting):
///
/// ```
/// use airlock::{Exit, Scope, ScopeKind};
///
/// struct AlwaysFlush;
///
/// impl ScopeKind for AlwaysFlush {
///     fn should_flush(&self, exit: Exit) -> bool {
///         matches!(exit, Exit::Success | Exit::Failure)
///     }
/// }
///
/// let result: Result<(), airlock::Error> = Scope::new().kind(AlwaysFlush).run(|| {
///     // airlock::enqueue(PageOnCall { ... })?;
///     Err(airlock::Error::TaskFailed { task: "example", source: "the body failed".into() })
/// });
/// assert!(result.is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an airlock scope kind",
    label = "expected a scope kind",
    note = "use `Independent` or a type that implements `airlock::ScopeKind` (and `Default`, for `#[airlock::scoped(scope = ...)]`)"
)]
pub trait ScopeKind: Any + Send + Sync {
    /// Whether to flush, given how the body ended. Asked on every way a scope
    /// ends, [`Exit::Panic`] and [`Exit::Cancelled`] included, so an alerting
    /// scope can report the crash; the default flushes on success only.
    ///
    /// When a scope flushes after its body failed, the body's own error is
    /// what the caller gets; a flush failure then goes to the undelivered
    /// hook. After a panic or cancellation there is no caller: the dispatch
    /// is guarded (a task that fails or panics cannot abort the process) and
    /// what it could not dispatch goes to the undelivered hook. A cancelled
    /// async scope cannot await its executor, so intents of a pending
    /// dispatch go there too.
    fn should_flush(&self, exit: Exit) -> bool {
        exit == Exit::Success
    }

    /// Called on each enclosing scope, nearest first, when a nested scope
    /// flushes: which of `intents` may the exiting scope dispatch itself? The
    /// others are captured into this scope's buffer, still carrying the
    /// exiting scope's policy. Those let through still answer to this scope's
    /// policy when the exiting scope flushes them: every policy on the path
    /// counts.
    fn before_descendant_flushes(&self, exiting: &Descendant<'_>, intents: &[Intent]) -> Release {
        let _ = (exiting, intents);
        Release::None
    }

    /// Decides when the filtered intents are dispatched. Return the batch to
    /// dispatch it now; keep it (and return `None`) to dispatch it later, for
    /// instance after a database transaction commits. The scope itself is
    /// finished either way.
    fn schedule(&self, batch: Batch) -> Option<Batch> {
        Some(batch)
    }

    /// Whether this scope keeps its own intents when it flushes instead of
    /// offering them to the enclosing scopes (rule 8): the scope is the
    /// outermost for its own intents, and they go straight to its policy and
    /// [`schedule`](ScopeKind::schedule).
    ///
    /// For a boundary whose success cannot be undone by the code around it,
    /// such as a committed database transaction: an enclosing request scope
    /// that later fails must not discard the effects of a COMMIT. The default
    /// is `false`.
    fn keeps_own_intents(&self) -> bool {
        false
    }
}

impl<K: ScopeKind + ?Sized> ScopeKind for Arc<K> {
    fn should_flush(&self, exit: Exit) -> bool {
        (**self).should_flush(exit)
    }
    fn before_descendant_flushes(&self, exiting: &Descendant<'_>, intents: &[Intent]) -> Release {
        (**self).before_descendant_flushes(exiting, intents)
    }
    fn schedule(&self, batch: Batch) -> Option<Batch> {
        (**self).schedule(batch)
    }
    fn keeps_own_intents(&self) -> bool {
        (**self).keeps_own_intents()
    }
}

/// A scope whose descendants dispatch their own intents when they flush,
/// instead of handing them up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Independent;

impl ScopeKind for Independent {
    fn before_descendant_flushes(&self, _: &Descendant<'_>, _: &[Intent]) -> Release {
        Release::All
    }
}

/// Filtered intents on their way to the executor.
///
/// A [`ScopeKind::schedule`] that defers dispatch keeps the batch and later
/// calls [`dispatch`](Batch::dispatch) (or [`discard`](Batch::discard), for a
/// rolled-back transaction). A batch dropped without either hands its
/// intents to the [undelivered hook](crate::Undelivered).
#[must_use = "a batch dispatches nothing until `dispatch` is called"]
pub struct Batch {
    intents: Vec<Intent>,
    executor: Option<Arc<dyn Executor>>,
    report: FlushReport,
}

impl Batch {
    pub(crate) fn new(
        intents: Vec<Intent>,
        executor: Option<Arc<dyn Executor>>,
        report: FlushReport,
    ) -> Self {
        Batch {
            intents,
            executor,
            report,
        }
    }

    /// The intents to dispatch, in order.
    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    /// Dispatches the batch now, blocking on an asynchronous executor.
    ///
    /// # Errors
    ///
    /// [`Error::Dispatch`](crate::Error::Dispatch) if the executor fails; it
    /// hands back the intents that were not dispatched.
    pub fn dispatch(mut self) -> Result<FlushReport> {
        let (intents, executor, report) = self.take();
        settle(report, start_blocking(intents, executor))
    }

    /// Dispatches the batch now, awaiting an asynchronous executor.
    ///
    /// Cancelled part way (the future dropped), the intents the executor had
    /// not dispatched go to the [undelivered hook](crate::Undelivered).
    ///
    /// # Errors
    ///
    /// As [`dispatch`](Batch::dispatch).
    pub async fn dispatch_async(mut self) -> Result<FlushReport> {
        let (intents, executor, report) = self.take();
        let result = match start(intents, executor) {
            Dispatch::Done(result) => result,
            Dispatch::Pending(future) => future.await,
        };
        settle(report, result)
    }

    /// Drops the intents on purpose, returning how many there were.
    pub fn discard(mut self) -> usize {
        let count = self.intents.len();
        self.intents.clear();
        tracing::debug!(target: "airlock", discarded = count, "deferred batch discarded");
        count
    }

    pub(crate) fn take(&mut self) -> (Vec<Intent>, Option<Arc<dyn Executor>>, FlushReport) {
        (
            std::mem::take(&mut self.intents),
            self.executor.take(),
            std::mem::take(&mut self.report),
        )
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        crate::undelivered(Undelivered::new(
            std::mem::take(&mut self.intents),
            "a deferred batch was dropped without dispatch() or discard()",
        ));
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("intents", &self.intents)
            .finish_non_exhaustive()
    }
}

pub(crate) fn start(intents: Vec<Intent>, executor: Option<Arc<dyn Executor>>) -> Dispatch {
    if intents.is_empty() {
        return Dispatch::Done(Ok(()));
    }
    crate::receipt::clear();
    let intents = Intents::new(intents);
    match executor {
        Some(executor) => executor.dispatch(intents),
        None => InlineExecutor.dispatch(intents),
    }
}

/// [`start`], waited for on this thread.
///
/// Where waiting for an asynchronous task would hang (inside a current-thread
/// tokio runtime, see `block_on`), the inline executor runs the synchronous
/// intents before the first asynchronous one, then fails on it, handing it
/// back with the rest: none of them was started.
pub(crate) fn start_blocking(
    mut intents: Vec<Intent>,
    executor: Option<Arc<dyn Executor>>,
) -> std::result::Result<(), DispatchFailure> {
    let Some(first_task) = intents.first().map(Intent::name) else {
        return Ok(());
    };
    if executor.is_none()
        && let Err(hang) = crate::block_on::check()
        && let Some(first_async) = intents.iter().position(Intent::is_async)
    {
        let mut refused = intents.split_off(first_async).into_iter();
        return match start(intents, None).wait(first_task) {
            Ok(()) => {
                let failed = refused.next().expect("split at an intent");
                Err(DispatchFailure::new(first_async, failed, hang, refused))
            }
            Err(mut failure) => {
                failure.not_attempted.extend(refused);
                Err(failure)
            }
        };
    }
    start(intents, executor).wait(first_task)
}

/// Folds the executor's answer into the report, or into an error that hands
/// back what was not dispatched.
pub(crate) fn settle(
    report: FlushReport,
    result: std::result::Result<(), DispatchFailure>,
) -> Result<FlushReport> {
    match result {
        Ok(()) => Ok(with_receipts(report)),
        Err(failure) => Err(failed(report, failure)),
    }
}

/// The error of a dispatch that failed: it hands back what was not
/// dispatched, with the report.
pub(crate) fn failed(report: FlushReport, failure: DispatchFailure) -> Error {
    let mut report = with_receipts(report);
    report.dispatched = failure.dispatched;
    report.keep_dispatched(failure.dispatched);
    tracing::error!(
        target: "airlock",
        task = failure.failed_task,
        error = %failure.error,
        dispatched = failure.dispatched,
        not_dispatched = failure.not_attempted.len() + usize::from(failure.failed.is_some()),
        "flush failed"
    );
    DispatchError {
        report,
        failed_task: failure.failed_task,
        source: failure.error,
        failed: failure.failed,
        undispatched: failure.not_attempted,
    }
    .into()
}

/// The report, with the receipts the dispatch left.
fn with_receipts(mut report: FlushReport) -> FlushReport {
    let receipts = crate::receipt::take();
    if !receipts.is_empty() {
        report.receipts = receipts;
    }
    report
}
