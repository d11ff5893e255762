//! Futures that carry airlock's per-thread state across `.await`: the state is
//! swapped in around every poll, on whatever thread polls, as tokio's
//! `TaskLocalFuture` does. Nothing here depends on a particular runtime.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;

use crate::config::Defaults;
use crate::context::{CONTEXT, Context, DefaultsOverride, Frame};
use crate::executor::{Dispatch, DispatchFailure};
use crate::kind::{self, Exit};
use crate::policy::PolicyChain;
use crate::report::FlushReport;
use crate::scope::{self, Detail, Outcome, Scope};
use crate::task::BoxFuture;

pin_project! {
    /// The future returned by [`Scope::run_async`] and
    /// [`scope_async`](crate::scope_async).
    ///
    /// Its scope is current whenever it is polled. When the inner future
    /// completes, the scope flushes or discards by [`Outcome`], awaiting an
    /// asynchronous executor. Dropped before completion, it discards.
    #[must_use = "futures do nothing unless polled"]
    pub struct ScopeFuture<F: Future> {
        // `None` once dropped: a cancelled scope drops its future with the
        // scope current, so what its destructors enqueue is discarded with
        // it rather than escaping through the enclosing scope.
        #[pin]
        future: Option<F>,
        state: State<F::Output>,
    }

    impl<F: Future> PinnedDrop for ScopeFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let State::Running(slot) = this.state
                && this.future.is_some()
            {
                let _lend = Lend::try_new(&mut slot.0);
                this.future.set(None);
            }
        }
    }
}

enum State<R> {
    Start(Option<Scope>),
    Running(FrameSlot),
    // Boxed: an asynchronous dispatch is the rare end, and the output it
    // holds (an HTTP response, say) would otherwise size every scope future.
    Flushing(Box<Flushing<R>>),
    Done,
}

/// A scope future's output, kept while its executor dispatches.
struct Flushing<R> {
    out: R,
    exit: Exit,
    report: FlushReport,
    dispatch: Dispatching,
}

/// A dispatch under way; dropping it unfinished (the scope's future was
/// cancelled mid-flush) leaves some effects escaped and hands the rest to the
/// undelivered hook, so it says so.
struct Dispatching(Option<BoxFuture<Result<(), DispatchFailure>>>);

impl Drop for Dispatching {
    fn drop(&mut self) {
        if self.0.is_some() {
            tracing::warn!(
                target: "airlock",
                "an async scope was cancelled while its executor was dispatching: \
                 some intents may have escaped; the executor hands the rest to the undelivered hook"
            );
        }
    }
}

/// Owns a scope's frame between polls; discards it if dropped with it.
struct FrameSlot(Option<Frame>);

impl Drop for FrameSlot {
    fn drop(&mut self) {
        if let Some(frame) = self.0.take() {
            // Dropped while unwinding: the future's poll panicked.
            let exit = if std::thread::panicking() {
                Exit::Panic
            } else {
                Exit::Cancelled
            };
            scope::end_unattended(frame, exit);
        }
    }
}

/// Puts the frame back in its slot when the poll ends, even by panic.
struct Lend<'a> {
    slot: &'a mut Option<Frame>,
    id: u64,
    /// The frame was ended where it lay: nothing to take back, and no visit
    /// to the thread's state to find that out.
    ended: bool,
}

impl<'a> Lend<'a> {
    /// Lends the frame if it can without panicking (not in a hook, the
    /// thread's state not torn down): for use in `Drop`.
    fn try_new(slot: &'a mut Option<Frame>) -> Option<Self> {
        let frame = slot.take()?;
        let id = frame.id;
        let pushed = CONTEXT.try_with(|cx| cx.push(frame));
        match pushed {
            Ok(Ok(())) => Some(Lend {
                slot,
                id,
                ended: false,
            }),
            Ok(Err(frame)) => {
                *slot = Some(frame);
                None
            }
            // The frame went down with the thread's state.
            Err(_) => None,
        }
    }

    fn new(slot: &'a mut Option<Frame>) -> Self {
        let frame = slot
            .take()
            .expect("airlock: scope frame missing between polls");
        CONTEXT.with(|cx| Self::push(cx, slot, frame))
    }

    /// Opens `scope` and lends its frame at once: one visit to the thread's
    /// state.
    fn open(slot: &'a mut Option<Frame>, scope: Scope) -> Self {
        CONTEXT.with(|cx| {
            let frame = scope.into_frame(cx);
            Self::push(cx, slot, frame)
        })
    }

    fn push(cx: &Context, slot: &'a mut Option<Frame>, frame: Frame) -> Self {
        let id = frame.id;
        if let Err(frame) = cx.push(frame) {
            *slot = Some(frame);
            panic!("airlock: a scope future was polled inside a policy or scope hook");
        }
        Lend {
            slot,
            id,
            ended: false,
        }
    }
}

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        if !self.ended {
            *self.slot = CONTEXT.try_with(|cx| cx.pop(self.id)).ok().flatten();
        }
    }
}

impl<F: Future> ScopeFuture<F>
where
    F::Output: Outcome,
{
    pub(crate) fn new(scope: Scope, future: F) -> Self {
        ScopeFuture {
            future: Some(future),
            state: State::Start(Some(scope)),
        }
    }

    /// Opens the scope now and calls `start` with it current; the future
    /// `start` returns then runs in the same scope. A panic in `start`
    /// discards the scope and goes on unwinding.
    pub(crate) fn started(scope: Scope, start: impl FnOnce() -> F) -> Self {
        let mut slot = FrameSlot(None);
        let future = {
            let _lend = Lend::open(&mut slot.0, scope);
            start()
        };
        ScopeFuture {
            future: Some(future),
            state: State::Running(slot),
        }
    }
}

impl<F: Future> Future for ScopeFuture<F>
where
    F::Output: Outcome,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Start(scope) => {
                    let scope = scope.take().expect("airlock: scope taken twice");
                    let frame = CONTEXT.with(|cx| scope.into_frame(cx));
                    *this.state = State::Running(FrameSlot(Some(frame)));
                }
                State::Running(slot) => {
                    let ready = {
                        let mut lend = Lend::new(&mut slot.0);
                        let future = this.future.as_mut().as_pin_mut();
                        let poll = future
                            .expect("airlock: ScopeFuture polled after drop")
                            .poll(cx);
                        poll.map(|out| {
                            let exit = if out.is_success() {
                                Exit::Success
                            } else {
                                Exit::Failure
                            };
                            // The common ends (empty, discarded, captured by
                            // a plain parent) happen with the frame still
                            // current, moving nothing; the lend then has
                            // nothing to take back.
                            lend.ended = CONTEXT.with(|cx| {
                                matches!(
                                    scope::end_in_place(cx, lend.id, exit, false),
                                    scope::InPlace::Ended
                                )
                            });
                            (out, exit, lend.ended)
                        })
                    };
                    let Poll::Ready((out, exit, ended)) = ready else {
                        return Poll::Pending;
                    };
                    if ended {
                        *this.state = State::Done;
                        return Poll::Ready(out);
                    }
                    let frame = slot.0.take().expect("airlock: scope frame lost in poll");
                    let (intents, executor, report) =
                        match scope::prepare(frame, exit, Detail::Exceptions).into_dispatch() {
                            Ok(Ok(_)) => {
                                *this.state = State::Done;
                                return Poll::Ready(out);
                            }
                            Ok(Err(error)) => {
                                *this.state = State::Done;
                                return Poll::Ready(scope::fold_flush_error(out, exit, error));
                            }
                            Err(pending) => pending,
                        };
                    match kind::start(intents, executor) {
                        Dispatch::Done(result) => {
                            *this.state = State::Done;
                            return Poll::Ready(settle(out, exit, report, result));
                        }
                        Dispatch::Pending(dispatch) => {
                            *this.state = State::Flushing(Box::new(Flushing {
                                out,
                                exit,
                                report,
                                dispatch: Dispatching(Some(dispatch)),
                            }));
                        }
                    }
                }
                State::Flushing(flushing) => {
                    let future = flushing
                        .dispatch
                        .0
                        .as_mut()
                        .expect("airlock: dispatch polled after completion");
                    let result = ready!(future.as_mut().poll(cx));
                    flushing.dispatch.0 = None;
                    let State::Flushing(flushing) = std::mem::replace(this.state, State::Done)
                    else {
                        unreachable!("airlock: the state changed under a poll")
                    };
                    let Flushing {
                        out, exit, report, ..
                    } = *flushing;
                    return Poll::Ready(settle(out, exit, report, result));
                }
                State::Done => panic!("airlock: ScopeFuture polled after completion"),
            }
        }
    }
}

fn settle<R: Outcome>(
    out: R,
    exit: Exit,
    report: FlushReport,
    result: Result<(), DispatchFailure>,
) -> R {
    match kind::settle(report, result) {
        Ok(_) => out,
        Err(error) => scope::fold_flush_error(out, exit, error),
    }
}

impl<F: Future> fmt::Debug for ScopeFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start(_) => "not started",
            State::Running(_) => "running",
            State::Flushing { .. } => "flushing",
            State::Done => "done",
        };
        f.debug_struct("ScopeFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// The future returned by [`capture_async`](crate::capture_async).
    #[must_use = "futures do nothing unless polled"]
    pub struct CaptureFuture<F> {
        // `None` once finished or dropped; dropped with the scope current.
        #[pin]
        future: Option<F>,
        slot: FrameSlot,
    }

    impl<F> PinnedDrop for CaptureFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _lend = Lend::try_new(&mut this.slot.0);
                this.future.set(None);
            }
        }
    }
}

impl<F: Future> CaptureFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        let frame = CONTEXT.with(|cx| Scope::new().policy(crate::AllowAll).into_frame(cx));
        CaptureFuture {
            future: Some(future),
            slot: FrameSlot(Some(frame)),
        }
    }
}

impl<F: Future> Future for CaptureFuture<F> {
    type Output = (F::Output, Vec<crate::Intent>);

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let poll = {
            let _lend = Lend::new(&mut this.slot.0);
            let future = this.future.as_mut().as_pin_mut();
            future
                .expect("airlock: CaptureFuture polled after completion")
                .poll(cx)
        };
        let Poll::Ready(out) = poll else {
            return Poll::Pending;
        };
        this.future.set(None);
        let frame = this
            .slot
            .0
            .take()
            .expect("airlock: capture frame lost in poll");
        Poll::Ready((out, frame.into_intents()))
    }
}

impl<F> fmt::Debug for CaptureFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by [`with_policy_async`](crate::with_policy_async):
    /// a local policy region in force while the inner future is polled.
    #[must_use = "futures do nothing unless polled"]
    pub struct PolicyFuture<F> {
        // `None` once dropped: dropped with the region in force, so what its
        // destructors enqueue still answers to the region's policy.
        #[pin]
        future: Option<F>,
        chain: Option<PolicyChain>,
        linked: bool,
    }

    impl<F> PinnedDrop for PolicyFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _swap = SwapRegion::try_new(this.chain);
                this.future.set(None);
            }
        }
    }
}

impl<F: Future> PolicyFuture<F> {
    pub(crate) fn new(chain: PolicyChain, future: F) -> Self {
        PolicyFuture {
            future: Some(future),
            chain: Some(chain),
            linked: false,
        }
    }
}

impl<F: Future> Future for PolicyFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.linked {
            // Regions nest: link to the regions in force where this future is
            // first polled.
            *this.linked = true;
            let outer = CONTEXT.with(|cx| cx.local_chain());
            if let Some(outer) = outer {
                *this.chain = this.chain.take().map(|chain| chain.on_top_of(outer));
            }
        }
        let _swap = SwapRegion::new(this.chain);
        let future = this.future.as_pin_mut();
        future
            .expect("airlock: PolicyFuture polled after drop")
            .poll(cx)
    }
}

/// Makes `slot` the thread's region chain for its lifetime, then puts both
/// back.
struct SwapRegion<'a> {
    slot: &'a mut Option<PolicyChain>,
    previous: Option<PolicyChain>,
}

impl<'a> SwapRegion<'a> {
    fn new(slot: &'a mut Option<PolicyChain>) -> Self {
        let previous = CONTEXT.with(|cx| cx.replace_local(slot.take()));
        SwapRegion { slot, previous }
    }

    /// [`SwapRegion::new`] that does nothing once the thread's state is torn
    /// down: for use in `Drop`.
    fn try_new(slot: &'a mut Option<PolicyChain>) -> Option<Self> {
        let chain = slot.take();
        match CONTEXT.try_with(|cx| cx.replace_local(chain.clone())) {
            Ok(previous) => Some(SwapRegion { slot, previous }),
            Err(_) => {
                *slot = chain;
                None
            }
        }
    }
}

impl Drop for SwapRegion<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Settled: a chain lent to an intent while the future was polled is
        // taken back as a clone.
        if let Ok(ours) = CONTEXT.try_with(|cx| cx.replace_local(previous)) {
            *self.slot = ours;
        }
    }
}

impl<F> fmt::Debug for PolicyFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by
    /// [`with_defaults_async`](crate::with_defaults_async).
    #[must_use = "futures do nothing unless polled"]
    pub struct WithDefaults<F> {
        // `None` once dropped: dropped with the override in force, so what
        // its destructors do (a cancelled dispatch reaching the undelivered
        // hook) sees the same defaults as its polls.
        #[pin]
        future: Option<F>,
        defaults: Option<Defaults>,
    }

    impl<F> PinnedDrop for WithDefaults<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _guard = DefaultsOverride::try_set(this.defaults.take());
                this.future.set(None);
            }
        }
    }
}

impl<F: Future> WithDefaults<F> {
    pub(crate) fn new(defaults: Defaults, future: F) -> Self {
        WithDefaults {
            future: Some(future),
            defaults: Some(defaults),
        }
    }
}

impl<F: Future> Future for WithDefaults<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let guard = DefaultsOverride::set(this.defaults.take());
        let future = this.future.as_pin_mut();
        let poll = future
            .expect("airlock: WithDefaults polled after drop")
            .poll(cx);
        *this.defaults = guard.restore();
        poll
    }
}

impl<F> fmt::Debug for WithDefaults<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithDefaults").finish_non_exhaustive()
    }
}
