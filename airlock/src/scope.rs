//! Scopes: the buffer and its lifecycle.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::buffer::{Captured, capture_into, mark_captured};
use crate::context::{CONTEXT, Config, Context, Enclosing, Frame, HookGuard, Stack, with_context};
use crate::error::{DispatchError, Error, Result, StateError, StateErrorKind};
use crate::executor::{Dispatch, DispatchFailure, Executor, InlineExecutor};
use crate::intent::Intent;
use crate::kind::{self, Batch, Descendant, Exit, Release, ScopeKind};
use crate::policy::{AllowAll, Policy};
use crate::report::{Fate, FlushReport};
use crate::undelivered::Undelivered;

/// A scope to run code in: the builder for its policy (WHAT), executor (HOW)
/// and kind (WHEN). Anything left unset comes from the [defaults](crate::configure).
///
/// # Examples
///
/// ```
/// use airlock::{DropAll, Scope};
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Backfill { id: u64 }
/// # impl Task for Backfill { const NAME: &'static str = "backfill"; fn run(self) -> Run { panic!("must not run") } }
///
/// // A migration: everything is buffered, nothing escapes.
/// Scope::new().policy(DropAll).run(|| airlock::enqueue(Backfill { id: 1 }))?;
/// # Ok::<(), airlock::Error>(())
/// ```
#[derive(Clone)]
#[must_use = "a scope does nothing until `run`, `run_async` or `enter` is called"]
pub struct Scope {
    /// `None` while every setting is left to the defaults: the common scope
    /// is one word, and telling it apart is one check.
    settings: Option<Arc<Settings>>,
}

/// A scope's explicit settings. Shared by clones of a configured scope (a
/// template cloned per request costs one reference count).
#[derive(Clone, Default)]
struct Settings {
    policy: Setting<dyn Policy>,
    executor: Setting<dyn Executor>,
    kind: Setting<dyn ScopeKind>,
}

/// A scope setting: the default, or an explicit choice where `None` is the
/// built-in (and fastest) one.
#[derive(Default)]
enum Setting<T: ?Sized> {
    #[default]
    Default,
    Explicit(Option<Arc<T>>),
}

impl<T: ?Sized> Clone for Setting<T> {
    fn clone(&self) -> Self {
        match self {
            Setting::Default => Setting::Default,
            Setting::Explicit(value) => Setting::Explicit(value.clone()),
        }
    }
}

impl<T: ?Sized> Setting<T> {
    fn resolve(&self, default: &Option<Arc<T>>) -> Option<Arc<T>> {
        match self {
            Setting::Default => default.clone(),
            Setting::Explicit(value) => value.clone(),
        }
    }

    fn is_explicit(&self) -> bool {
        matches!(self, Setting::Explicit(_))
    }
}

/// `AllowAll` is stored as "no policy", so the common case costs no call.
pub(crate) fn policy_arc<P: Policy>(policy: P) -> Option<Arc<dyn Policy>> {
    (TypeId::of::<P>() != TypeId::of::<AllowAll>()).then(|| Arc::new(policy) as Arc<dyn Policy>)
}

/// `InlineExecutor` is stored as "no executor", so dispatch needs no call
/// through a pointer.
pub(crate) fn executor_arc<E: Executor>(executor: E) -> Option<Arc<dyn Executor>> {
    (TypeId::of::<E>() != TypeId::of::<InlineExecutor>())
        .then(|| Arc::new(executor) as Arc<dyn Executor>)
}

impl Scope {
    /// A scope that takes everything from the defaults.
    pub const fn new() -> Self {
        Scope { settings: None }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(self.settings.get_or_insert_default())
    }

    /// Sets the policy: which intents may escape.
    pub fn policy<P: Policy>(mut self, policy: P) -> Self {
        self.settings().policy = Setting::Explicit(policy_arc(policy));
        self
    }

    /// Sets the executor: how escaping intents run.
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.settings().executor = Setting::Explicit(executor_arc(executor));
        self
    }

    /// Sets the scope kind: when intents escape.
    pub fn kind<K: ScopeKind>(mut self, kind: K) -> Self {
        self.settings().kind = Setting::Explicit(Some(Arc::new(kind)));
        self
    }

    #[inline]
    pub(crate) fn into_frame(self, cx: &Context) -> Frame {
        let config = match self.settings {
            None if cx.defaults_are_builtin() => None,
            None => cx.with_defaults(|d| d.config.clone()),
            Some(settings) => cx.with_defaults(|d| {
                Config::new(
                    settings.policy.resolve(&d.policy),
                    settings.executor.resolve(&d.executor),
                    settings.kind.resolve(&d.kind),
                )
            }),
        };
        Frame::local(cx.next_id(), config, Vec::new())
    }

    /// Runs `f` in this scope: its intents are flushed if `f` succeeds and
    /// discarded if it fails or panics (rule 3).
    ///
    /// A flush error is folded into `f`'s result (see [`Outcome`]), so
    /// `Scope::new().run(|| ...)?` reports both.
    ///
    /// # Panics
    ///
    /// If called from inside a policy or scope hook, which is a bug: hooks
    /// judge intents, they do not run units of work.
    pub fn run<R: Outcome>(self, f: impl FnOnce() -> R) -> R {
        with_context(|cx| {
            let entered = Entered::push_in(cx, self);
            let out = f();
            let exit = if out.is_success() {
                Exit::Success
            } else {
                Exit::Failure
            };
            match entered.finish_in(cx, exit) {
                None => out,
                Some(error) => fold_flush_error(out, exit, *error),
            }
        })
    }

    /// Runs `future` in this scope, which is current whenever the future is
    /// polled, on whatever thread polls it. Flushes or discards when it
    /// completes, by [`Outcome`]; an asynchronous executor is awaited.
    /// Dropping the returned future before it completes discards (rule 3).
    pub fn run_async<F>(self, future: F) -> crate::future::ScopeFuture<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        crate::future::ScopeFuture::new(self, future)
    }

    /// Opens this scope now, calls `start` with it current, and runs the
    /// future `start` returns in the same scope: the shape of a tower
    /// `Service::call`, whose synchronous part and response future are one
    /// unit of work. Otherwise as [`run_async`](Scope::run_async): the scope
    /// is current whenever the future is polled, ends by [`Outcome`] when it
    /// completes, and discards if the future is dropped first or `start`
    /// panics.
    ///
    /// # Panics
    ///
    /// If called from inside a policy or scope hook, which is a bug: hooks
    /// judge intents, they do not run units of work.
    ///
    /// # Examples
    ///
    /// ```
    /// # use airlock::{Run, Task};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> airlock::Result<()> {
    /// let future = airlock::Scope::new().run_async_with(|| {
    ///     airlock::enqueue(Ping).unwrap(); // in the scope already
    ///     async { airlock::enqueue(Ping) }
    /// });
    /// future.await // both pings run here
    /// # }
    /// ```
    pub fn run_async_with<F>(self, start: impl FnOnce() -> F) -> crate::future::ScopeFuture<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        crate::future::ScopeFuture::started(self, start)
    }

    /// Makes this scope current until [`ActiveScope::exit`]: the imperative
    /// form, for code whose unit of work does not fit in a closure.
    ///
    /// # Errors
    ///
    /// A [`StateError`] if called from inside a policy or scope hook.
    ///
    /// # Examples
    ///
    /// ```
    /// # use airlock::{Run, Task};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
    /// let mut scope = airlock::Scope::new().enter()?;
    /// airlock::enqueue(Ping)?;
    /// assert!(scope.flush().is_err(), "still current: exit first");
    /// scope.exit()?;
    /// let report = scope.flush()?;
    /// assert_eq!(report.dispatched().collect::<Vec<_>>(), ["ping"]);
    /// # Ok::<(), airlock::Error>(())
    /// ```
    pub fn enter(self) -> Result<ActiveScope> {
        self.enter_at(Enclosing::CURRENT)
    }

    /// [`enter`](Scope::enter), with the scope its intents go to when it
    /// flushes: `CURRENT` for the one current now.
    pub(crate) fn enter_at(self, enclosing: Enclosing) -> Result<ActiveScope> {
        CONTEXT.with(|cx| {
            let mut frame = self.into_frame(cx);
            let current = cx
                .stack
                .try_borrow()
                .ok()
                .and_then(|stack| stack.frames.last().map(|t| t.id));
            frame.enclosing = match (enclosing, current) {
                (Enclosing::CURRENT, Some(id)) => Enclosing::frame(id),
                _ => Enclosing::ROOT,
            };
            let id = frame.id;
            cx.push(frame)
                .map_err(|_| StateError::new(StateErrorKind::InHook))?;
            Ok(ActiveScope {
                id,
                state: ActiveState::Entered,
                _not_send: PhantomData,
            })
        })
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |explicit: fn(&Settings) -> bool| {
            if self.settings.as_deref().is_some_and(explicit) {
                "explicit"
            } else {
                "default"
            }
        };
        f.debug_struct("Scope")
            .field("policy", &show(|s| s.policy.is_explicit()))
            .field("executor", &show(|s| s.executor.is_explicit()))
            .field("kind", &show(|s| s.kind.is_explicit()))
            .finish()
    }
}

/// How a body's result decides a scope's fate, and how a flush error joins it.
///
/// Implemented for `Result<T, E>` where `E: From<airlock::Error>` (so
/// `airlock::Error`, `anyhow::Error`, `Box<dyn Error>`, `std::io::Error`, and
/// your own error types once they have that `From`): `Ok` flushes, `Err`
/// discards, and a flush error becomes the `Err`.
#[diagnostic::on_unimplemented(
    message = "a scope body cannot return `{Self}`",
    label = "return a `Result<T, E>` where `E: From<airlock::Error>`",
    note = "the scope flushes on `Ok`, discards on `Err`, and folds a flush error into the `Err`; `airlock::Result<T>` and `anyhow::Result<T>` work"
)]
pub trait Outcome {
    /// Whether the body succeeded.
    fn is_success(&self) -> bool;

    /// The result to return when the body succeeded but its flush failed.
    fn absorb_flush_error(self, error: Error) -> Self;
}

impl<T, E: From<Error>> Outcome for Result<T, E> {
    fn is_success(&self) -> bool {
        self.is_ok()
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        Err(error.into())
    }
}

/// Joins a flush error to the body's result: a successful body returns it,
/// a failed one keeps its own error (the kind flushed anyway, for alerting)
/// and the flush's intents go to the undelivered hook.
pub(crate) fn fold_flush_error<R: Outcome>(out: R, exit: Exit, error: Error) -> R {
    if exit == Exit::Success {
        return out.absorb_flush_error(error);
    }
    error_to_hook(
        error,
        "a scope flushed after its body failed, and the flush failed",
    );
    out
}

/// Hands the intents of an error no caller will see to the undelivered hook.
pub(crate) fn error_to_hook(error: Error, cause: &'static str) {
    let message = error.to_string();
    crate::undelivered(Undelivered::new(error.into_undispatched(), cause).with_error(message));
}

/// Ends a scope where no caller can take an error (a panic unwinding, a
/// dropped `ActiveScope`, a cancelled future): its kind is asked whether to
/// flush all the same; a failure, or a panic in a hook, cannot escape, and
/// what could not be dispatched goes to the undelivered hook.
///
/// On a panic the dispatch runs to completion here, as a synchronous scope's
/// does. On a cancellation a pending dispatch cannot be awaited: the intents
/// it holds go to the undelivered hook.
pub(crate) fn end_unattended(frame: Frame, exit: Exit) -> usize {
    if frame.kind().is_none() {
        return discard(frame, exit);
    }
    let ended = catch_unwind(AssertUnwindSafe(|| {
        match prepare(frame, exit, Detail::Exceptions).into_dispatch() {
            Ok(result) => result.map(drop),
            Err((intents, executor, report)) if exit == Exit::Panic => {
                kind::settle(report, kind::start_blocking(intents, executor)).map(drop)
            }
            Err((intents, executor, report)) => match kind::start(intents, executor) {
                Dispatch::Done(result) => kind::settle(report, result).map(drop),
                // Dropped unfinished: its `Intents` hand what they hold to
                // the undelivered hook.
                Dispatch::Pending(_) => Ok(()),
            },
        }
    }));
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            error_to_hook(error, "a scope that ended without a caller failed to flush")
        }
        Err(_) => tracing::error!(
            target: "airlock",
            ?exit,
            "a scope hook or executor panicked while its scope ended without a caller"
        ),
    }
    0
}

/// Runs `f` in a new scope with the default settings: shorthand for
/// `Scope::new().run(f)`.
///
/// # Examples
///
/// ```
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
/// airlock::scope(|| airlock::enqueue(Ping))?; // Ping runs here, after the closure
/// # Ok::<(), airlock::Error>(())
/// ```
pub fn scope<R: Outcome>(f: impl FnOnce() -> R) -> R {
    Scope::new().run(f)
}

/// Runs `future` in a new scope with the default settings: shorthand for
/// `Scope::new().run_async(future)`.
pub fn scope_async<F>(future: F) -> crate::future::ScopeFuture<F>
where
    F: Future,
    F::Output: Outcome,
{
    Scope::new().run_async(future)
}

/// Runs `f` in a scope that neither flushes nor discards, and returns what it
/// buffered: for tests that look at the side effects instead of performing
/// them.
///
/// Intents from nested scopes are included (they are captured, as usual).
///
/// # Examples
///
/// ```
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)] struct Ping { n: u32 }
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { panic!() } }
/// let (result, intents) = airlock::capture(|| airlock::enqueue(Ping { n: 1 }));
/// assert!(result.is_ok());
/// assert_eq!(intents[0].payload::<Ping>(), Some(&Ping { n: 1 }));
/// ```
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Intent>) {
    let entered = Entered::push(Scope::new().policy(AllowAll));
    let out = f();
    (out, entered.pop().into_intents())
}

/// [`capture`] for a future: runs it in a scope that neither flushes nor
/// discards, and returns its output with what it buffered. The scope is
/// current whenever the future is polled; dropped unfinished, it discards.
///
/// # Examples
///
/// ```
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)] struct Ping { n: u32 }
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { panic!() } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (result, intents) = airlock::capture_async(async {
///     tokio::task::yield_now().await;
///     airlock::enqueue(Ping { n: 1 })
/// })
/// .await;
/// assert!(result.is_ok());
/// assert_eq!(intents[0].payload::<Ping>(), Some(&Ping { n: 1 }));
/// # }
/// ```
pub fn capture_async<F: Future>(future: F) -> crate::future::CaptureFuture<F> {
    crate::future::CaptureFuture::new(future)
}

/// Runs `f` in a scope with the default policy and kind, flushing as an
/// outermost scope would (its own policy, then each intent's: local regions,
/// nested scopes), but with an executor that records instead of
/// dispatching. Returns `f`'s result, the flush report (what was dropped, and
/// by which policy) and the intents that would have been dispatched: for
/// tests of what *escapes*, where [`capture`] shows what was *buffered*.
/// Nothing reaches an enclosing scope.
///
/// # Panics
///
/// If called from inside a policy or scope hook, which is a bug: hooks
/// judge intents, they do not run units of work.
///
/// # Examples
///
/// ```
/// use airlock::BlockTasks;
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Sms;
/// # impl Task for Sms { const NAME: &'static str = "sms"; fn run(self) -> Run { panic!() } }
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Mail;
/// # impl Task for Mail { const NAME: &'static str = "mail"; fn run(self) -> Run { panic!() } }
/// let (result, report, escaped) = airlock::capture_report(|| {
///     airlock::with_policy(BlockTasks::of::<Sms>(), || {
///         airlock::enqueue(Sms)?;
///         airlock::enqueue(Mail)
///     })
/// });
/// assert!(result.is_ok());
/// assert_eq!(report.dropped().collect::<Vec<_>>(), [("sms", "BlockTasks")]);
/// assert_eq!(escaped.len(), 1);
/// assert!(escaped[0].is::<Mail>());
/// ```
pub fn capture_report<R: Outcome>(f: impl FnOnce() -> R) -> (R, FlushReport, Vec<Intent>) {
    let collected = Collect::default();
    let mut scope = Scope::new()
        .executor(collected.clone())
        .enter_at(Enclosing::ROOT)
        .unwrap_or_else(|_| {
            panic!(
                "airlock: capture_report was called inside a policy or scope hook; \
                 hooks judge intents and cannot run units of work"
            )
        });
    let out = f();
    let flushed = match scope.exit() {
        Ok(()) if out.is_success() => scope.flush(),
        _ => scope.discard().map(|_| FlushReport::default()),
    };
    // The collector cannot fail, and the scope was entered here: a failure
    // is a bug in this function.
    let report = flushed.expect("airlock: capture_report's own scope failed to end");
    (out, report, collected.take())
}

/// An executor that keeps what it is given.
#[derive(Clone, Default)]
struct Collect(Arc<std::sync::Mutex<Vec<Intent>>>);

impl Collect {
    fn take(&self) -> Vec<Intent> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Executor for Collect {
    fn dispatch(&self, intents: crate::executor::Intents) -> Dispatch {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(intents);
        Dispatch::Done(Ok(()))
    }
}

/// Clones of the intents buffered so far in the current scope, own and
/// captured, in order, then those sent through its [handles](crate::handle).
/// Inside a scope entered through a handle, what has been sent to that scope
/// so far. Empty when there is no current scope.
pub fn buffered() -> Vec<Intent> {
    CONTEXT.with(|cx| {
        let Ok(stack) = cx.stack.try_borrow() else {
            return Vec::new();
        };
        let Some(top) = stack.frames.last() else {
            return Vec::new();
        };
        let mut intents = if top.is_remote() {
            Vec::new()
        } else {
            Context::with_own(&stack, stack.frames.len() - 1, Frame::snapshot).unwrap_or_default()
        };
        if let Some(shared) = &top.shared {
            intents.extend(shared.sent());
        }
        intents
    })
}

/// Runs `f` with `policy` applied to every intent enqueued inside it, in
/// whatever scope (rule 10). No new buffer, no boundary: the policy travels
/// with each intent and judges it at flush, before the scope's policy.
/// Regions nest; the innermost judges first.
///
/// # Examples
///
/// ```
/// use airlock::BlockTasks;
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendSms;
/// # impl Task for SendSms { const NAME: &'static str = "send_sms"; fn run(self) -> Run { panic!() } }
///
/// let (_, intents) = airlock::capture(|| {
///     airlock::with_policy(BlockTasks::of::<SendSms>(), || airlock::enqueue(SendSms))
/// });
/// assert_eq!(intents[0].policies().count(), 1);
/// ```
pub fn with_policy<P: Policy, R>(policy: P, f: impl FnOnce() -> R) -> R {
    let _region = Region::push(policy);
    f()
}

/// Like [`with_policy`], for a future: the region is in force while it is
/// polled.
pub fn with_policy_async<P: Policy, F: Future>(
    policy: P,
    future: F,
) -> crate::future::PolicyFuture<F> {
    crate::future::PolicyFuture::new(crate::policy::PolicyChain::push(None, policy), future)
}

/// Restores the previous local region chain on drop.
struct Region {
    previous: Option<crate::policy::PolicyChain>,
}

impl Region {
    #[inline(always)]
    fn push<P: Policy>(policy: P) -> Self {
        with_context(|cx| Region {
            previous: cx.open_region(|outer| crate::policy::PolicyChain::push(outer, policy)),
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CONTEXT.try_with(|cx| cx.restore_local(previous));
    }
}

/// A frame pushed for the duration of a closure; discards on unwind.
pub(crate) struct Entered {
    id: u64,
    done: bool,
}

impl Entered {
    /// Pushes the scope's frame. A scope with the built-in settings, where
    /// they are in force, takes a path short enough to inline, so that the
    /// thread-local is reached directly.
    #[inline(always)]
    pub(crate) fn push(scope: Scope) -> Self {
        with_context(|cx| Entered::push_in(cx, scope))
    }

    #[inline(always)]
    fn push_in(cx: &Context, scope: Scope) -> Self {
        let id = if scope.settings.is_none() && !cx.in_hook() && cx.defaults_are_builtin() {
            cx.push_plain()
        } else {
            push_configured(cx, scope)
        };
        Entered { id, done: false }
    }

    pub(crate) fn pop(mut self) -> Frame {
        self.done = true;
        CONTEXT
            .with(|cx| cx.pop(self.id))
            .expect("airlock: the current scope's frame vanished")
    }

    /// Pops the frame and ends it; the error, if any, boxed so that the
    /// common path moves one word. The commonest ends (empty, captured by a
    /// plain parent) are decided inline.
    #[inline(always)]
    fn finish_in(mut self, cx: &Context, exit: Exit) -> Option<Box<Error>> {
        self.done = true;
        match end_plain(cx, self.id, exit) {
            Plain::Ended => None,
            plain => finish_rest(cx, self.id, exit, plain),
        }
    }
}

/// Pushes the frame of a scope whose settings are not all the built-ins.
#[inline(never)]
fn push_configured(cx: &Context, scope: Scope) -> u64 {
    if cx.in_hook() {
        hook_misuse();
    }
    let frame = scope.into_frame(cx);
    let id = frame.id;
    cx.push_frame(frame);
    id
}

/// Ends a closure scope's frame that [`end_plain`] did not end.
#[inline(never)]
fn finish_rest(cx: &Context, id: u64, exit: Exit, plain: Plain) -> Option<Box<Error>> {
    match end_rest(cx, exit, plain, true) {
        InPlace::Ended => None,
        InPlace::Failed(error) => Some(error),
        InPlace::No => finish_popped(cx, id, exit),
    }
}

/// The general end of a closure scope's frame (see [`end_quietly`]).
#[inline(never)]
fn finish_popped(cx: &Context, id: u64, exit: Exit) -> Option<Box<Error>> {
    let frame = cx
        .pop(id)
        .expect("airlock: the current scope's frame vanished");
    end_quietly(cx, frame, exit).err().map(Box::new)
}

#[cold]
fn hook_misuse() -> ! {
    panic!(
        "airlock: a scope was opened inside a policy or scope hook; \
         hooks judge intents and cannot run units of work"
    )
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            unwound(self.id);
        }
    }
}

/// Ends the frame of a closure scope whose body panicked.
#[cold]
fn unwound(id: u64) {
    if let Ok(Some(frame)) = CONTEXT.try_with(|cx| cx.pop(id)) {
        end_unattended(frame, Exit::Panic);
    }
}

/// A scope entered with [`Scope::enter`]: exit, then flush or discard.
///
/// Misuse is an error, never a panic (rule 12). Dropping it without a flush or
/// discard discards its intents with a warning through `tracing`.
///
/// It is tied to the thread that entered it (it is not `Send`); to reach a
/// scope from another thread, use [`handle`](crate::handle).
pub struct ActiveScope {
    id: u64,
    state: ActiveState,
    _not_send: PhantomData<*const ()>,
}

enum ActiveState {
    Entered,
    Exited(Frame),
    Flushed,
    Discarded,
    Failed,
    /// A `flush_async` was dropped while its executor was dispatching.
    Cancelled,
}

impl ActiveScope {
    /// Stops being the current scope. Its intents stay buffered.
    ///
    /// # Errors
    ///
    /// [`StateErrorKind::NotCurrent`] if it is not current: already exited, or
    /// scopes entered after it are still current.
    pub fn exit(&mut self) -> Result<()> {
        if !matches!(self.state, ActiveState::Entered) {
            return Err(StateError::new(StateErrorKind::NotCurrent).into());
        }
        let frame = CONTEXT.with(|cx| cx.pop_top(self.id));
        let frame = frame.ok_or(StateError::new(StateErrorKind::NotCurrent))?;
        self.state = ActiveState::Exited(frame);
        Ok(())
    }

    /// Takes the frame of an exited scope. A flush (`for_flush`) also needs
    /// the scope it was entered in to be current, to hand its intents to.
    fn take_exited(&mut self, for_flush: bool) -> Result<Frame> {
        let kind = match &self.state {
            ActiveState::Exited(frame) if for_flush && !encloser_is_current(frame.enclosing) => {
                StateErrorKind::EnclosingNotCurrent
            }
            ActiveState::Exited(_) => {
                let ActiveState::Exited(frame) =
                    std::mem::replace(&mut self.state, ActiveState::Failed)
                else {
                    unreachable!()
                };
                return Ok(frame);
            }
            ActiveState::Entered => StateErrorKind::StillCurrent,
            ActiveState::Flushed => StateErrorKind::AlreadyFlushed,
            ActiveState::Discarded => StateErrorKind::AlreadyDiscarded,
            ActiveState::Failed => StateErrorKind::FlushFailed,
            ActiveState::Cancelled => StateErrorKind::FlushCancelled,
        };
        Err(StateError::new(kind).into())
    }

    /// Flushes: nesting, policies, then dispatch, as if the body had
    /// succeeded.
    ///
    /// # Errors
    ///
    /// A [`StateError`] if the scope is still current or already finished;
    /// [`Error::Dispatch`] if the executor fails, after which the scope is
    /// finished.
    pub fn flush(&mut self) -> Result<FlushReport> {
        let frame = self.take_exited(true)?;
        let result = CONTEXT.with(|cx| finish_in(cx, frame, Exit::Success, Detail::Full));
        self.state = match result {
            Ok(_) => ActiveState::Flushed,
            Err(_) => ActiveState::Failed,
        };
        result
    }

    /// [`flush`](ActiveScope::flush), awaiting an asynchronous executor.
    ///
    /// Cancelled while the executor dispatches (the future dropped), the
    /// intents it had not dispatched go to the [undelivered
    /// hook](crate::Undelivered), and the scope is finished
    /// ([`StateErrorKind::FlushCancelled`]).
    ///
    /// # Errors
    ///
    /// As [`flush`](ActiveScope::flush).
    pub async fn flush_async(&mut self) -> Result<FlushReport> {
        let frame = self.take_exited(true)?;
        let result = match prepare(frame, Exit::Success, Detail::Full).into_dispatch() {
            Ok(result) => result,
            Err((intents, executor, report)) => {
                let result = match kind::start(intents, executor) {
                    Dispatch::Done(result) => result,
                    Dispatch::Pending(future) => {
                        self.state = ActiveState::Cancelled;
                        future.await
                    }
                };
                kind::settle(report, result)
            }
        };
        self.state = match result {
            Ok(_) => ActiveState::Flushed,
            Err(_) => ActiveState::Failed,
        };
        result
    }

    /// Drops the buffered intents, returning how many there were.
    ///
    /// # Errors
    ///
    /// A [`StateError`] if the scope is still current or already finished.
    pub fn discard(&mut self) -> Result<usize> {
        let frame = self.take_exited(false)?;
        self.state = ActiveState::Discarded;
        Ok(discard(frame, Exit::Failure))
    }

    /// Calls `f` with the scope's frame and its own intents, wherever they
    /// are; `none` once the scope is finished.
    fn with_frame<R>(&self, f: impl FnOnce(&Frame, &[Intent]) -> R, none: R) -> R {
        match &self.state {
            ActiveState::Exited(frame) => f(frame, &frame.intents),
            ActiveState::Entered => CONTEXT.with(|cx| {
                let Ok(stack) = cx.stack.try_borrow() else {
                    return none;
                };
                let Some(index) = stack.frames.iter().rposition(|frame| frame.id == self.id) else {
                    return none;
                };
                Context::with_own(&stack, index, f).unwrap_or(none)
            }),
            _ => none,
        }
    }

    /// Clones of every buffered intent, own and captured, in order. Empty
    /// once the scope is finished.
    pub fn intents(&self) -> Vec<Intent> {
        self.with_frame(Frame::snapshot, Vec::new())
    }

    /// Clones of the intents enqueued directly into this scope.
    pub fn own_intents(&self) -> Vec<Intent> {
        let mut intents = self.intents();
        intents.retain(|i| !i.is_captured());
        intents
    }

    /// Clones of the intents captured from nested scopes.
    pub fn captured_intents(&self) -> Vec<Intent> {
        let mut intents = self.intents();
        intents.retain(Intent::is_captured);
        intents
    }

    /// How many intents are buffered.
    pub fn len(&self) -> usize {
        self.with_frame(Frame::len, 0)
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether the scope an `ActiveScope` was entered in is current again, so its
/// intents can be handed to it.
fn encloser_is_current(enclosing: Enclosing) -> bool {
    match enclosing.frame_id() {
        None => true,
        Some(id) => CONTEXT.with(|cx| {
            cx.stack
                .try_borrow()
                .is_ok_and(|stack| stack.frames.last().is_some_and(|top| top.id == id))
        }),
    }
}

impl Drop for ActiveScope {
    fn drop(&mut self) {
        let frame = match std::mem::replace(&mut self.state, ActiveState::Discarded) {
            ActiveState::Entered => CONTEXT.try_with(|cx| cx.pop(self.id)).ok().flatten(),
            ActiveState::Exited(frame) => Some(frame),
            _ => None,
        };
        if let Some(frame) = frame {
            let exit = if std::thread::panicking() {
                Exit::Panic
            } else {
                Exit::Cancelled
            };
            let count = end_unattended(frame, exit);
            if count > 0 && exit == Exit::Cancelled {
                tracing::warn!(
                    target: "airlock",
                    discarded = count,
                    "an ActiveScope was dropped without flush() or discard(): its intents were discarded"
                );
            }
        }
    }
}

impl fmt::Debug for ActiveScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ActiveState::Entered => "entered",
            ActiveState::Exited(_) => "exited",
            ActiveState::Flushed => "flushed",
            ActiveState::Discarded => "discarded",
            ActiveState::Failed => "failed",
            ActiveState::Cancelled => "cancelled",
        };
        f.debug_struct("ActiveScope")
            .field("state", &state)
            .field("len", &self.len())
            .finish()
    }
}

/// Drops a frame's intents, returning how many there were.
pub(crate) fn discard(frame: Frame, exit: Exit) -> usize {
    let (intents, captured) = frame.into_parts();
    let count = intents.len() + captured.as_ref().map_or(0, |c| c.len());
    drop(captured);
    // During thread teardown the context is gone and the intents drop here.
    let _ = CONTEXT.try_with(|cx| discard_intents(cx, intents, exit));
    count
}

fn discard_intents(cx: &Context, intents: Vec<Intent>, exit: Exit) -> usize {
    let count = intents.len();
    cx.recycle(intents);
    tracing::debug!(target: "airlock", ?exit, discarded = count, "scope discarded");
    count
}

/// What remains of a flush after nesting and policies.
pub(crate) enum Prepared {
    /// Nothing left to dispatch now.
    Done(FlushReport),
    /// For the inline executor, with no scope kind to consult.
    Inline(Vec<Intent>, FlushReport),
    Dispatch(Batch),
    /// The flush could not go on; the error hands back what it holds.
    Failed(Error),
}

type Pending = (Vec<Intent>, Option<Arc<dyn Executor>>, FlushReport);

impl Prepared {
    /// The outcome if nothing is left to do, else what the executor must
    /// take.
    pub(crate) fn into_dispatch(self) -> std::result::Result<Result<FlushReport>, Pending> {
        match self {
            Prepared::Done(report) => Ok(Ok(report)),
            Prepared::Failed(error) => Ok(Err(error)),
            Prepared::Inline(intents, report) => Err((intents, None, report)),
            Prepared::Dispatch(mut batch) => Err(batch.take()),
        }
    }
}

/// Ends a frame synchronously: discard, or flush and dispatch (blocking on an
/// asynchronous executor).
pub(crate) fn finish_in(
    cx: &Context,
    frame: Frame,
    exit: Exit,
    detail: Detail,
) -> Result<FlushReport> {
    match prepare_in(cx, frame, exit, detail) {
        Prepared::Done(report) => Ok(report),
        Prepared::Inline(intents, report) => dispatch_inline(cx, intents, || report),
        Prepared::Dispatch(batch) => batch.dispatch(),
        Prepared::Failed(error) => Err(error),
    }
}

/// Ends the current frame `id` where its intents lie, if it is a plain scope
/// (built-in settings, no handle taken, nothing captured whole) that is
/// empty, discarded, or captured by a plain parent of this thread. Then
/// nothing moves: a discard truncates the thread's buffer, and a captured
/// scope's part simply becomes its parent's (rule 8; it has no policy for
/// its intents to carry). Returns whether it ended the frame.
///
/// An outermost plain scope whose intents carry no policies of their own is
/// dispatched from the thread's buffer too, which it takes whole and gives
/// back emptied.
///
/// `dispatch`: whether an outermost scope may dispatch here, synchronously
/// (not for a future, whose asynchronous tasks are awaited).
#[inline]
pub(crate) fn end_in_place(cx: &Context, id: u64, exit: Exit, dispatch: bool) -> InPlace {
    match end_plain(cx, id, exit) {
        Plain::Ended => InPlace::Ended,
        plain => end_rest(cx, exit, plain, dispatch),
    }
}

/// How [`end_plain`] left the current frame.
enum Plain {
    /// Ended: it was empty, or captured by a plain parent.
    Ended,
    /// A plain frame, not empty, whose scope failed: its part starts here.
    Discard(usize),
    /// The only frame, plain and not empty, whose scope succeeded.
    Outermost,
    /// Anything else.
    No,
}

/// The ends of [`end_in_place`] that need no more than a look at the
/// stack: an empty plain frame, and one captured by a plain parent. Small
/// enough to inline, which the closure and future forms do.
#[inline(always)]
fn end_plain(cx: &Context, id: u64, exit: Exit) -> Plain {
    let Ok(mut stack) = cx.stack.try_borrow_mut() else {
        return Plain::No;
    };
    let Stack { frames, buffer } = &mut *stack;
    let Some(top) = frames.last() else {
        return Plain::No;
    };
    // A frame on the stack holds no buffer of its own (see `attach`).
    if top.id != id || top.config.is_some() || top.shared.is_some() || top.captured.is_some() {
        return Plain::No;
    }
    let mark = top.mark;
    let count = buffer.len() - mark;
    if count == 0 {
        // Checked above: it holds no setting, handle, buffer or chunk, and
        // no policy counts it as judging.
        cx.drop_plain_top(frames);
        if exit == Exit::Success {
            tracing::debug!(target: "airlock", allowed = 0, dropped = 0, captured = 0, "scope flushed");
        } else {
            tracing::debug!(target: "airlock", ?exit, discarded = 0, "scope discarded");
        }
        return Plain::Ended;
    }
    if exit != Exit::Success {
        return Plain::Discard(mark);
    }
    let Some(parent) = frames.len().checked_sub(2).map(|at| &frames[at]) else {
        return Plain::Outermost;
    };
    if parent.kind().is_some() || parent.is_remote() || count > crate::buffer::MOVE_LIMIT {
        return Plain::No;
    }
    cx.drop_plain_top(frames);
    for intent in &mut buffer[mark..] {
        intent.set_captured();
    }
    // A subscriber may look at the stack (`airlock::buffered()`).
    drop(stack);
    tracing::debug!(target: "airlock", allowed = 0, dropped = 0, captured = count, "scope flushed");
    Plain::Ended
}

/// The rest of [`end_in_place`]: a discard, or an outermost scope's
/// dispatch.
fn end_rest(cx: &Context, exit: Exit, plain: Plain, dispatch: bool) -> InPlace {
    match plain {
        Plain::Ended => InPlace::Ended,
        Plain::Discard(mark) => {
            cx.drop_plain_top(&mut cx.stack.borrow_mut().frames);
            // Dropped outside every borrow: a payload's `Drop` may call airlock.
            let part = cx.take_part(mark);
            discard_intents(cx, part, exit);
            InPlace::Ended
        }
        Plain::Outermost if dispatch => dispatch_in_place(cx),
        Plain::Outermost | Plain::No => InPlace::No,
    }
}

/// Dispatches the whole thread's buffer for the outermost plain scope (the
/// only frame, on top of the stack), if no intent carries a policy of its own.
#[inline]
fn dispatch_in_place(cx: &Context) -> InPlace {
    let Ok(mut stack) = cx.stack.try_borrow_mut() else {
        return InPlace::No;
    };
    // An intent holding a lent local chain (see `Context::region`) has a
    // policy, so the buffer never leaves whole while one is lent.
    if stack.buffer.iter().any(Intent::has_policies) {
        return InPlace::No;
    }
    let intents = std::mem::take(&mut stack.buffer);
    cx.drop_plain_top(&mut stack.frames);
    drop(stack);
    let count = intents.len();
    tracing::debug!(target: "airlock", allowed = count, dropped = 0, captured = 0, "scope flushed");
    match run_inline(cx, intents) {
        None => InPlace::Ended,
        Some(failure) => InPlace::Failed(Box::new(failed_quietly(*failure))),
    }
}

/// What [`end_in_place`] did.
pub(crate) enum InPlace {
    /// Not its case: the frame is still on the stack.
    No,
    Ended,
    /// Ended, and its dispatch failed.
    Failed(Box<Error>),
}

/// Ends a frame whose report nobody reads (the closure and future forms).
///
/// The common scope (built-in settings, no handle taken, not nested, intents
/// without policies of their own) is decided here directly; everything else
/// takes the general path.
#[inline]
pub(crate) fn end_quietly(cx: &Context, frame: Frame, exit: Exit) -> Result<()> {
    if frame.config.is_some() || frame.shared.is_some() {
        return finish_in(cx, frame, exit, Detail::Exceptions).map(drop);
    }
    let Frame {
        intents, captured, ..
    } = frame;
    if exit != Exit::Success {
        drop(captured);
        discard_intents(cx, intents, exit);
        return Ok(());
    }
    if intents.is_empty() && captured.is_none() {
        tracing::debug!(target: "airlock", allowed = 0, dropped = 0, captured = 0, "scope flushed");
        cx.recycle(intents);
        return Ok(());
    }
    let mut stack = cx.stack.borrow_mut();
    let Stack { frames, buffer } = &mut *stack;
    if let Some(parent) = frames.last_mut()
        && parent.kind().is_none()
        && !parent.is_remote()
    {
        // Nested in a plain scope: captured whole (rule 8), and this scope
        // has no policy of its own for them to carry.
        let captured_count = intents.len() + captured.as_ref().map_or(0, |c| c.len());
        let emptied = capture_into(
            buffer,
            parent.mark,
            &mut parent.captured,
            intents,
            captured,
            None,
        );
        drop(stack);
        tracing::debug!(
            target: "airlock",
            allowed = 0,
            dropped = 0,
            captured = captured_count,
            "scope flushed"
        );
        cx.recycle(emptied);
        return Ok(());
    }
    let intents = crate::buffer::flatten(intents, captured);
    let plain = frames.is_empty() && intents.iter().all(|i| !i.has_policies());
    drop(stack);
    if !plain {
        return finish_in(cx, Frame::local(0, None, intents), exit, Detail::Exceptions).map(drop);
    }
    tracing::debug!(
        target: "airlock",
        allowed = intents.len(),
        dropped = 0,
        captured = 0,
        "scope flushed"
    );
    match run_inline(cx, intents) {
        None => Ok(()),
        Some(failure) => Err(failed_quietly(*failure)),
    }
}

/// The error of a failed dispatch whose report nobody reads but in the
/// error: the report is made here, and the failure sets its count.
#[cold]
fn failed_quietly(failure: DispatchFailure) -> Error {
    kind::failed(FlushReport::default(), failure)
}

/// Dispatches with the inline executor, then makes the report.
#[inline]
fn dispatch_inline(
    cx: &Context,
    intents: Vec<Intent>,
    report: impl FnOnce() -> FlushReport,
) -> Result<FlushReport> {
    match run_inline(cx, intents) {
        None => Ok(report()),
        Some(failure) => Err(kind::failed(report(), *failure)),
    }
}

/// The inline executor's loop, run here so the emptied buffer can be reused.
/// The failure, if any, is boxed so that the common path returns one word.
#[inline]
fn run_inline(cx: &Context, mut intents: Vec<Intent>) -> Option<Box<DispatchFailure>> {
    for index in 0..intents.len() {
        // The intent stays whole until the flush ends, so a failure can hand
        // it back.
        let intent = &intents[index];
        let result = catch_unwind(AssertUnwindSafe(|| intent.run_cloned().wait()))
            .unwrap_or_else(|panic| Err(crate::executor::panicked(intent.name(), &*panic)));
        if let Err(error) = result {
            let rest = intents.split_off(index + 1);
            let failed = intents
                .pop()
                .expect("the failed intent is the last one left");
            return Some(Box::new(DispatchFailure::new(index, failed, error, rest)));
        }
    }
    intents.clear();
    // The outermost scope took the thread's buffer: give it back.
    cx.give_back(intents);
    None
}

/// How much a flush records in its report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Every intent's fate: the caller returns the report.
    Full,
    /// Only dropped intents, and counts: nobody reads the report unless the
    /// dispatch fails, and the common flush then allocates nothing for it.
    Exceptions,
}

/// [`prepare_in`] for callers outside the thread's context.
pub(crate) fn prepare(frame: Frame, exit: Exit, detail: Detail) -> Prepared {
    CONTEXT.with(|cx| prepare_in(cx, frame, exit, detail))
}

/// Everything a flush does before the executor: the flush decision, capture by
/// enclosing scopes (rule 8), then the policies (rule 6), then the kind's
/// scheduling.
pub(crate) fn prepare_in(cx: &Context, frame: Frame, exit: Exit, detail: Detail) -> Prepared {
    let flush = match (frame.kind(), exit) {
        (None, exit) => exit == Exit::Success,
        (Some(kind), exit) => {
            let _hook = HookGuard::enter(cx);
            kind.should_flush(exit)
        }
    };
    if !flush {
        discard(frame, exit);
        return Prepared::Done(FlushReport::default());
    }
    let config = frame.config.clone();
    let enclosing = frame.enclosing;
    let (policy, executor, kind) = match &config {
        None => (None, None, None),
        Some(c) => (c.policy.as_ref(), c.executor.clone(), c.kind.as_ref()),
    };
    let (own, captured) = frame.into_parts();
    let before = own.len() + captured.as_ref().map_or(0, |c| c.len());
    // A kind may defer dispatch, and its report must then say which intents
    // were deferred.
    let detailed = detail == Detail::Full || kind.is_some();
    // A kind that keeps its own intents is not captured (a committed
    // transaction), though the enclosing scopes' policies still judge them.
    let keeps_own = kind.is_some_and(|k| k.keeps_own_intents());
    let (own, captured) = if enclosing != Enclosing::ROOT && !keeps_own {
        match capture_whole(cx, own, captured, policy) {
            Ok(emptied) => {
                cx.recycle(emptied);
                tracing::debug!(
                    target: "airlock",
                    allowed = 0,
                    dropped = 0,
                    captured = before,
                    "scope flushed"
                );
                return Prepared::Done(FlushReport {
                    captured: before,
                    detailed,
                    ..FlushReport::default()
                });
            }
            Err(parts) => parts,
        }
    } else {
        (own, captured)
    };
    let mut intents = crate::buffer::flatten(own, captured);
    if before > 0 && enclosing != Enclosing::ROOT {
        if keeps_own {
            judged_by_ancestors(cx, &mut intents);
        } else if let Err(lost) = hand_to_ancestors(cx, &mut intents, policy, kind.map(|k| &**k)) {
            return Prepared::Failed(ended_handle(lost));
        }
    }
    let mut report = FlushReport {
        captured: before - intents.len(),
        detailed,
        ..FlushReport::default()
    };
    let judged = intents.len();
    if judged > 0 {
        let _hook = HookGuard::enter(cx);
        judge(&mut intents, policy.map(|p| &**p), &mut report);
        // A portable policy travels with what it let through, so a queue
        // executor can send it along with the jobs (`crate::portable`).
        if let Some(policy) = policy
            && policy.portable().is_some()
        {
            for intent in &mut intents {
                intent.push_scope_policy(policy.clone());
            }
        }
    }
    // Settled by the dispatch: lowered if it fails part-way.
    report.dispatched = intents.len();
    tracing::debug!(
        target: "airlock",
        allowed = intents.len(),
        dropped = judged - intents.len(),
        captured = report.captured,
        "scope flushed"
    );
    if intents.is_empty() {
        cx.recycle(intents);
        return Prepared::Done(report);
    }
    let Some(kind) = kind else {
        return match executor {
            None => Prepared::Inline(intents, report),
            executor => Prepared::Dispatch(Batch::new(intents, executor, report)),
        };
    };
    let mut deferred = report.clone();
    let scheduled = {
        let _hook = HookGuard::enter(cx);
        kind.schedule(Batch::new(intents, executor, report))
    };
    match scheduled {
        Some(batch) => Prepared::Dispatch(batch),
        None => {
            deferred.mark(Fate::Dispatched, Fate::Deferred);
            deferred.dispatched = 0;
            Prepared::Done(deferred)
        }
    }
}

/// Applies the policies at flush (rule 6): each intent's own (local regions,
/// then captured scopes, innermost first), then the flushing scope's. Keeps
/// the allowed intents in order and reports every fate.
fn judge(intents: &mut Vec<Intent>, policy: Option<&dyn Policy>, report: &mut FlushReport) {
    intents.retain(|intent| {
        let mut dropped_by = None;
        if intent.has_policies() {
            dropped_by = intent.policies().find_map(|p| p.dropped_by(intent));
        }
        if dropped_by.is_none()
            && let Some(policy) = policy
        {
            dropped_by = policy.dropped_by(intent);
        }
        if report.detailed || dropped_by.is_some() {
            record(report, intent, dropped_by);
        }
        dropped_by.is_none()
    });
}

/// Records an intent's fate in the report: out of line, so that the loop
/// over the intents stays small where the report lists only what is dropped.
#[inline(never)]
fn record(report: &mut FlushReport, intent: &Intent, dropped_by: Option<&'static str>) {
    let fate = dropped_by.map_or(Fate::Dispatched, |policy| Fate::Dropped { policy });
    report.push(intent.name(), fate);
}

/// Offers an exiting scope's intents to its enclosing scopes, nearest first;
/// each captures what it does not release (rule 8). Captured intents keep the
/// exiting scope's policy (rule 9).
///
/// Fails, handing the intents back, when the nearest enclosing scope is one
/// reached through a handle and it has already ended.
fn hand_to_ancestors(
    cx: &Context,
    intents: &mut Vec<Intent>,
    policy: Option<&Arc<dyn Policy>>,
    kind: Option<&dyn ScopeKind>,
) -> std::result::Result<(), Vec<Intent>> {
    let exiting = Descendant { kind };
    let mut at = cx.stack.borrow().frames.len();
    while at > 0 && !intents.is_empty() {
        at -= 1;
        // The ancestor's hook runs with the stack only read, so it may look
        // at it (`airlock::buffered()`).
        let ancestor_kind = cx
            .stack
            .borrow()
            .frames
            .get(at)
            .and_then(|f| f.kind().cloned());
        let release = match ancestor_kind {
            None => Release::None,
            Some(ancestor_kind) => {
                let _hook = HookGuard::enter(cx);
                ancestor_kind.before_descendant_flushes(&exiting, intents)
            }
        };
        let Ok(mut stack) = cx.stack.try_borrow_mut() else {
            return Err(std::mem::take(intents));
        };
        // A hook that ended scopes (it exited an `ActiveScope`) leaves fewer.
        let Some(ancestor) = stack.frames.get_mut(at) else {
            return Err(std::mem::take(intents));
        };
        if release == Release::None && !ancestor.is_remote() {
            // The common case, kept allocation-free: move everything up and
            // leave the exiting scope's buffer empty, for reuse.
            let captured = intents
                .drain(..)
                .map(|intent| mark_captured(intent, policy));
            cx.extend_part(&mut stack, at, captured);
            return Ok(());
        }
        let captured = match release {
            Release::All => Vec::new(),
            Release::None => std::mem::take(intents),
            Release::Only(indices) => {
                let mut captured = Vec::new();
                for (index, intent) in std::mem::take(intents).into_iter().enumerate() {
                    if indices.contains(&index) {
                        intents.push(intent);
                    } else {
                        captured.push(intent);
                    }
                }
                captured
            }
        };
        // What the ancestor lets through still answers to its policy (rule 9).
        if let Some(ancestor_policy) = ancestor.policy() {
            for intent in intents.iter_mut() {
                intent.push_scope_policy(ancestor_policy.clone());
            }
        }
        let captured = captured
            .into_iter()
            .map(|intent| mark_captured(intent, policy));
        match (&ancestor.shared, ancestor.is_remote()) {
            (Some(shared), true) => {
                // The handle's scope decides for its own ancestors when it ends.
                let shared = Arc::clone(shared);
                drop(stack);
                return shared.push_all(captured.collect());
            }
            _ => cx.extend_part(&mut stack, at, captured),
        }
    }
    Ok(())
}

/// A scope that keeps its own intents ([`ScopeKind::keeps_own_intents`])
/// still answers to the policy of every enclosing scope (rule 9): a dry run
/// around it stays a dry run.
fn judged_by_ancestors(cx: &Context, intents: &mut [Intent]) {
    let stack = cx.stack.borrow();
    for ancestor in stack.frames.iter().rev() {
        if let Some(policy) = ancestor.policy() {
            for intent in intents.iter_mut() {
                intent.push_scope_policy(policy.clone());
            }
        }
    }
}

/// Captures a flushing scope's buffer whole into the current scope, when
/// that is a plain scope of this thread (rule 8's common case); else hands
/// the parts back for [`hand_to_ancestors`].
#[allow(clippy::type_complexity)]
fn capture_whole(
    cx: &Context,
    own: Vec<Intent>,
    captured: Option<Box<Captured>>,
    policy: Option<&Arc<dyn Policy>>,
) -> std::result::Result<Vec<Intent>, (Vec<Intent>, Option<Box<Captured>>)> {
    let Ok(mut stack) = cx.stack.try_borrow_mut() else {
        return Err((own, captured));
    };
    let Stack { frames, buffer } = &mut *stack;
    match frames.last_mut() {
        Some(parent) if parent.kind().is_none() && !parent.is_remote() => Ok(capture_into(
            buffer,
            parent.mark,
            &mut parent.captured,
            own,
            captured,
            policy,
        )),
        _ => Err((own, captured)),
    }
}

/// The error for intents that a nested scope could not hand to the scope of
/// an ended handle.
fn ended_handle(lost: Vec<Intent>) -> Error {
    let task = lost.first().map_or("?", Intent::name);
    tracing::error!(
        target: "airlock",
        task,
        count = lost.len(),
        "a nested scope flushed into a handle whose scope had already ended"
    );
    DispatchError {
        report: FlushReport::default(),
        failed_task: task,
        source: Box::new(StateError::for_task(StateErrorKind::Ended, task)),
        failed: None,
        undispatched: lost,
    }
    .into()
}
