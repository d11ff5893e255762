//! Carrying a scope to another thread or task (rule 11).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use crate::context::{CONTEXT, Context, Frame, Shared, SharedRef};
use crate::error::{Error, Result, StateError, StateErrorKind};
use crate::intent::Intent;

/// A `Send` handle to a scope, for work spawned on other threads or tasks.
///
/// Spawned work does not inherit the scope it was spawned from: that would let
/// intents leak between units of work. Take a handle with [`handle`] and use
/// it explicitly. Enqueueing through a handle after its scope has ended is an
/// error ([`StateErrorKind::Ended`]), never a lost effect.
///
/// Intents sent through a handle join the scope's buffer when the scope ends,
/// after the intents enqueued directly, and are judged and dispatched with
/// them.
///
/// # Examples
///
/// ```
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Resize { image: u32 }
/// # impl Task for Resize { const NAME: &'static str = "resize"; fn run(self) -> Run { Run::ok() } }
/// let (_, intents) = airlock::capture(|| {
///     let handle = airlock::handle()?;
///     std::thread::scope(|s| {
///         s.spawn(|| handle.run(|| airlock::enqueue(Resize { image: 1 }))).join().unwrap()
///     })
/// });
/// assert_eq!(intents.len(), 1);
/// # Ok::<(), airlock::Error>(())
/// ```
#[derive(Clone)]
pub struct ScopeHandle {
    shared: Arc<Shared>,
}

/// A handle to the current scope.
///
/// # Errors
///
/// A [`StateError`] if no scope is current.
pub fn handle() -> Result<ScopeHandle> {
    let taken = CONTEXT.try_with(|cx| {
        if cx.in_hook() {
            return Err(StateError::new(StateErrorKind::InHook).into());
        }
        let mut stack = cx.stack.borrow_mut();
        let policies = Context::scope_policies(&stack.frames);
        let top = stack
            .frames
            .last_mut()
            .ok_or(StateError::new(StateErrorKind::NoScope))?;
        let shared = Arc::clone(top.shared.get_or_insert_with(|| {
            SharedRef::owner(Arc::new(Shared {
                inbox: Mutex::new(Some(Vec::new())),
                policies,
            }))
        }));
        Ok(ScopeHandle { shared })
    });
    // During thread teardown no scope can be current.
    taken.unwrap_or_else(|_| Err(StateError::new(StateErrorKind::NoScope).into()))
}

impl ScopeHandle {
    /// Whether the scope is still open to intents.
    pub fn is_open(&self) -> bool {
        self.shared.inbox.lock().is_ok_and(|inbox| inbox.is_some())
    }

    /// Enqueues into the scope from anywhere.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](crate::enqueue), and [`StateErrorKind::Ended`] once the
    /// scope has ended.
    pub fn enqueue(&self, intent: impl Into<Intent>) -> Result<()> {
        let intent = intent.into();
        match CONTEXT.try_with(Context::in_hook) {
            Ok(false) => self.run(|| crate::enqueue(intent)),
            Ok(true) => Err(Error::EnqueueInHook {
                task: intent.name(),
                intent: Box::new(intent),
            }),
            // A thread-local destructor: this thread's airlock state is gone,
            // but the scope is not.
            Err(_) => self.enqueue_detached(intent),
        }
    }

    /// Enqueues without this thread's state: the handle's policies judge,
    /// and the intent goes straight to the scope's inbox.
    fn enqueue_detached(&self, intent: Intent) -> Result<()> {
        let judged = self
            .shared
            .policies
            .iter()
            .try_for_each(|policy| policy.rejected_by(&intent));
        if let Err((policy, violation)) = judged {
            return Err(Error::PolicyViolation {
                task: intent.name(),
                policy,
                violation,
                intent: Box::new(intent),
            });
        }
        self.shared
            .push_one(intent)
            .map_err(|intent| StateError::ended(intent).into())
    }

    /// Runs `f` with the scope current on this thread: plain
    /// [`enqueue`](crate::enqueue) calls inside reach it, and scopes opened
    /// inside are captured into it.
    ///
    /// From a thread-local destructor, where this thread's airlock state is
    /// gone, `f` runs with no scope current: use [`ScopeHandle::enqueue`]
    /// there, which still reaches the scope.
    ///
    /// # Panics
    ///
    /// If called from inside a policy or scope hook, which is a bug: hooks
    /// judge intents, they do not run units of work.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _lent = RemoteFrame::push(&self.shared);
        f()
    }

    /// Makes the scope current while `future` is polled.
    pub fn run_async<F: Future>(&self, future: F) -> HandleFuture<F> {
        HandleFuture {
            future: Some(future),
            shared: self.shared.clone(),
        }
    }
}

impl fmt::Debug for ScopeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHandle")
            .field("open", &self.is_open())
            .finish()
    }
}

/// A remote frame on this thread's stack for as long as it lives (none when
/// the thread's state is already torn down).
struct RemoteFrame {
    id: Option<u64>,
}

impl RemoteFrame {
    fn push(shared: &Arc<Shared>) -> Self {
        let id = CONTEXT.try_with(|cx| {
            let frame = Frame::remote(cx.next_id(), shared.clone());
            let id = frame.id;
            if cx.push(frame).is_err() {
                panic!("airlock: a scope handle was entered inside a policy or scope hook");
            }
            id
        });
        RemoteFrame { id: id.ok() }
    }
}

impl Drop for RemoteFrame {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let _ = CONTEXT.try_with(|cx| cx.pop(id));
        }
    }
}

pin_project! {
    /// The future returned by [`ScopeHandle::run_async`].
    #[must_use = "futures do nothing unless polled"]
    pub struct HandleFuture<F> {
        // `None` once dropped: dropped with the handle's scope current, so
        // what its destructors enqueue joins that scope.
        #[pin]
        future: Option<F>,
        shared: Arc<Shared>,
    }

    impl<F> PinnedDrop for HandleFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _lent = CONTEXT
                    .try_with(|cx| !cx.in_hook())
                    .unwrap_or(false)
                    .then(|| RemoteFrame::push(this.shared));
                this.future.set(None);
            }
        }
    }
}

impl<F: Future> Future for HandleFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _lent = RemoteFrame::push(this.shared);
        let future = this.future.as_pin_mut();
        future
            .expect("airlock: HandleFuture polled after drop")
            .poll(cx)
    }
}

impl<F> fmt::Debug for HandleFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleFuture").finish_non_exhaustive()
    }
}
