//! The per-thread state: the stack of current scopes, the local policy regions
//! in force, and the cached defaults.
//!
//! A scope's buffer lives here while the scope is current and moves back into
//! its owner (a guard, an [`ActiveScope`](crate::ActiveScope), a future) when it
//! is not, exactly as tokio's `TaskLocalFuture` swaps its value in around every
//! poll. Enqueueing therefore touches only this thread's memory: no lock, no
//! atomic.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, PoisonError};

use crate::buffer::Captured;
use crate::config::{self, Defaults};
use crate::error::{Error, Result, StateError};
use crate::executor::Executor;
use crate::intent::Intent;
use crate::kind::ScopeKind;
use crate::policy::{Policy, PolicyChain};

/// One current scope.
pub(crate) struct Frame {
    pub(crate) id: u64,
    /// `None` for a scope with every built-in default: the common case costs
    /// no pointer chasing.
    pub(crate) config: Option<Arc<Config>>,
    pub(crate) intents: Vec<Intent>,
    /// What it captured from nested scopes, kept whole (see `buffer`).
    pub(crate) captured: Option<Box<Captured>>,
    /// Where handles reach this scope. For a remote frame (a scope owned by
    /// another thread or task, entered through a handle), the scope itself.
    pub(crate) shared: Option<SharedRef>,
    pub(crate) enclosing: Enclosing,
}

/// Which scope a frame's intents are offered to when it flushes: whatever is
/// current then (closures and futures nest structurally), nothing (an
/// `ActiveScope` entered where no scope was current), or the frame that was
/// current when an `ActiveScope` was entered. A plain `u64`, like every other
/// field of a frame, so that frames move as whole words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Enclosing(u64);

impl Enclosing {
    pub(crate) const CURRENT: Enclosing = Enclosing(0);
    pub(crate) const ROOT: Enclosing = Enclosing(u64::MAX);

    pub(crate) fn frame(id: u64) -> Self {
        Enclosing(id)
    }

    /// The frame it names, if it names one.
    pub(crate) fn frame_id(self) -> Option<u64> {
        (self != Enclosing::CURRENT && self != Enclosing::ROOT).then_some(self.0)
    }
}

/// Marks the id of a remote frame (frame ids count up from 1 per thread, so
/// the top bit is free).
const REMOTE: u64 = 1 << 63;

/// A scope's WHAT, HOW and WHEN, where they differ from the built-ins.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) policy: Option<Arc<dyn Policy>>,
    pub(crate) executor: Option<Arc<dyn Executor>>,
    pub(crate) kind: Option<Arc<dyn ScopeKind>>,
}

impl Config {
    /// `None` when every setting is the built-in one.
    pub(crate) fn new(
        policy: Option<Arc<dyn Policy>>,
        executor: Option<Arc<dyn Executor>>,
        kind: Option<Arc<dyn ScopeKind>>,
    ) -> Option<Arc<Config>> {
        if policy.is_none() && executor.is_none() && kind.is_none() {
            return None;
        }
        Some(Arc::new(Config {
            policy,
            executor,
            kind,
        }))
    }
}

/// The part of a scope that handles on other threads can reach.
pub(crate) struct Shared {
    /// `None` once the scope has ended.
    pub(crate) inbox: Mutex<Option<Vec<Intent>>>,
    /// The policies of the scope and of its enclosing scopes when the handle
    /// was taken, innermost first: they see every enqueue made through it.
    pub(crate) policies: Vec<Arc<dyn Policy>>,
}

/// A frame's link to a [`Shared`]. The owning frame's link closes the scope
/// to its handles when it is dropped, however the scope ends (a panic in a
/// hook, a leaked scope torn down with its thread): a handle never sends
/// into a scope that can no longer flush.
pub(crate) struct SharedRef {
    shared: Arc<Shared>,
    owner: bool,
}

impl SharedRef {
    pub(crate) fn owner(shared: Arc<Shared>) -> Self {
        SharedRef {
            shared,
            owner: true,
        }
    }
}

impl std::ops::Deref for SharedRef {
    type Target = Arc<Shared>;

    fn deref(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for SharedRef {
    fn drop(&mut self) {
        if self.owner {
            let discarded = self.shared.close().len();
            if discarded > 0 {
                tracing::debug!(target: "airlock", discarded, "scope discarded");
            }
        }
    }
}

impl Shared {
    pub(crate) fn push_one(&self, intent: Intent) -> Result<(), Intent> {
        match self
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(inbox) => {
                inbox.push(intent);
                Ok(())
            }
            None => Err(intent),
        }
    }

    pub(crate) fn push_all(&self, intents: Vec<Intent>) -> Result<(), Vec<Intent>> {
        if intents.is_empty() {
            return Ok(());
        }
        match self
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(inbox) => {
                inbox.extend(intents);
                Ok(())
            }
            None => Err(intents),
        }
    }

    /// Clones of what handles have sent so far.
    pub(crate) fn sent(&self) -> Vec<Intent> {
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Ends the scope for its handles and takes what they sent.
    pub(crate) fn close(&self) -> Vec<Intent> {
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default()
    }
}

impl Frame {
    #[inline]
    pub(crate) fn local(id: u64, config: Option<Arc<Config>>, intents: Vec<Intent>) -> Self {
        Frame {
            id,
            config,
            intents,
            captured: None,
            shared: None,
            enclosing: Enclosing::CURRENT,
        }
    }

    pub(crate) fn remote(id: u64, shared: Arc<Shared>) -> Self {
        Frame {
            id: id | REMOTE,
            config: None,
            intents: Vec::new(),
            captured: None,
            shared: Some(SharedRef {
                shared,
                owner: false,
            }),
            enclosing: Enclosing::CURRENT,
        }
    }

    /// Whether this frame stands for a scope owned elsewhere, entered through
    /// a handle.
    #[inline]
    pub(crate) fn is_remote(&self) -> bool {
        self.id & REMOTE != 0
    }

    #[inline]
    pub(crate) fn policy(&self) -> Option<&Arc<dyn Policy>> {
        self.config.as_ref()?.policy.as_ref()
    }

    /// Whether a policy sees enqueues made while this frame is on the stack.
    #[inline]
    fn judges(&self) -> bool {
        self.is_remote() || self.policy().is_some()
    }

    pub(crate) fn kind(&self) -> Option<&Arc<dyn ScopeKind>> {
        self.config.as_ref()?.kind.as_ref()
    }

    /// Takes the frame's intents, laid out flat, closing it to handles.
    pub(crate) fn into_intents(self) -> Vec<Intent> {
        let (intents, captured) = self.into_parts();
        crate::buffer::flatten(intents, captured)
    }

    /// Takes the frame's own intents (those sent through handles last) and
    /// what it captured, closing it to handles.
    pub(crate) fn into_parts(self) -> (Vec<Intent>, Option<Box<Captured>>) {
        let remote = self.is_remote();
        let mut intents = self.intents;
        if let (false, Some(shared)) = (remote, &self.shared) {
            intents.extend(shared.close());
        }
        (intents, self.captured)
    }

    /// How many intents it holds, captured ones included.
    pub(crate) fn len(&self) -> usize {
        self.intents.len() + self.captured.as_ref().map_or(0, |c| c.len())
    }

    /// Clones of its intents, laid out flat.
    pub(crate) fn snapshot(&self) -> Vec<Intent> {
        crate::buffer::snapshot(&self.intents, self.captured.as_deref())
    }
}

pub(crate) struct Context {
    pub(crate) frames: RefCell<Vec<Frame>>,
    /// How many frames on the stack have a policy to consult at enqueue, so
    /// that an enqueue with none skips the walk.
    judging: Cell<usize>,
    pub(crate) local: Cell<Option<PolicyChain>>,
    in_hook: Cell<bool>,
    next_id: Cell<u64>,
    defaults_override: RefCell<Option<Defaults>>,
    defaults_cache: RefCell<Option<(u64, Defaults)>>,
    /// The generation at which the defaults in force were last seen to be the
    /// built-in ones (`u64::MAX`: not known to be), so a plain scope can skip
    /// reading them.
    builtin_at: Cell<u64>,
    /// Empty buffers of finished scopes, reused by the next ones so that a
    /// short scope allocates nothing for its buffer.
    pool: RefCell<Vec<Vec<Intent>>>,
}

/// Buffers larger than this are freed rather than kept for reuse.
const POOLED_CAPACITY: usize = 64;
/// How many empty buffers a thread keeps.
const POOL_SIZE: usize = 8;

thread_local! {
    pub(crate) static CONTEXT: Context = const {
        Context {
            frames: RefCell::new(Vec::new()),
            judging: Cell::new(0),
            local: Cell::new(None),
            in_hook: Cell::new(false),
            next_id: Cell::new(0),
            defaults_override: RefCell::new(None),
            defaults_cache: RefCell::new(None),
            builtin_at: Cell::new(u64::MAX),
            pool: RefCell::new(Vec::new()),
        }
    };
}

/// Marks the thread as inside a user hook for as long as it lives, so that a
/// hook calling back into airlock gets an error instead of a `RefCell` panic.
/// Guards nest (a hook that flushes a parked scope runs that scope's hooks):
/// each restores what it found.
pub(crate) struct HookGuard<'a> {
    flag: &'a Cell<bool>,
    previous: bool,
}

impl<'a> HookGuard<'a> {
    pub(crate) fn enter(cx: &'a Context) -> Self {
        let previous = cx.in_hook.replace(true);
        HookGuard {
            flag: &cx.in_hook,
            previous,
        }
    }
}

impl Drop for HookGuard<'_> {
    fn drop(&mut self) {
        self.flag.set(self.previous);
    }
}

impl Context {
    #[inline]
    pub(crate) fn in_hook(&self) -> bool {
        self.in_hook.get()
    }

    #[inline]
    pub(crate) fn next_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }

    #[inline]
    pub(crate) fn take_buffer(&self) -> Vec<Intent> {
        self.pool.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps an emptied buffer for the next scope.
    #[inline]
    pub(crate) fn recycle(&self, buffer: Vec<Intent>) {
        if buffer.capacity() != 0 && buffer.capacity() <= POOLED_CAPACITY {
            self.keep(buffer);
        }
    }

    fn keep(&self, mut buffer: Vec<Intent>) {
        buffer.clear();
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_SIZE {
            pool.push(buffer);
        }
    }

    #[inline]
    pub(crate) fn local_chain(&self) -> Option<PolicyChain> {
        let chain = self.local.take();
        let copy = chain.clone();
        self.local.set(chain);
        copy
    }

    #[inline]
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Frame> {
        if self.in_hook() {
            return Err(frame);
        }
        if frame.judges() {
            self.judging.set(self.judging.get() + 1);
        }
        self.frames.borrow_mut().push(frame);
        Ok(())
    }

    fn popped(&self, frame: Option<Frame>) -> Option<Frame> {
        if frame.as_ref().is_some_and(Frame::judges) {
            self.judging.set(self.judging.get() - 1);
        }
        frame
    }

    /// Removes the frame `id` if it is the current one.
    pub(crate) fn pop_top(&self, id: u64) -> Option<Frame> {
        let mut frames = self.frames.borrow_mut();
        let frame = match frames.last() {
            Some(top) if top.id == id => frames.pop(),
            _ => None,
        };
        self.popped(frame)
    }

    /// Removes the frame `id` from the stack. It is normally on top; if scopes
    /// entered after it were leaked (an `ActiveScope` forgotten while
    /// entered), it is taken from below them and they stay current.
    #[inline]
    pub(crate) fn pop(&self, id: u64) -> Option<Frame> {
        let mut frames = self.frames.borrow_mut();
        let frame = match frames.last() {
            Some(top) if top.id == id => frames.pop(),
            _ => {
                let at = frames.iter().rposition(|f| f.id == id)?;
                tracing::warn!(
                    target: "airlock",
                    "a scope ended while scopes entered after it were still current; \
                     exit ActiveScopes in the reverse order of entering them"
                );
                Some(frames.remove(at))
            }
        };
        self.popped(frame)
    }

    /// Enqueues the intent in `slot` (always `Some`; taken here).
    #[inline]
    pub(crate) fn enqueue(&self, slot: &mut Option<Intent>) -> Result<()> {
        let Some(mut intent) = slot.take() else {
            unreachable!("airlock: enqueue without an intent")
        };
        let task = intent.name();
        if self.in_hook() {
            return Err(Error::EnqueueInHook {
                task,
                intent: Box::new(intent),
            });
        }
        // Busy only if airlock is re-entered from code it runs while it holds
        // the stack (a payload's `Drop`): refuse rather than panic.
        let Ok(frames) = self.frames.try_borrow() else {
            return Err(Error::EnqueueInHook {
                task,
                intent: Box::new(intent),
            });
        };
        if frames.is_empty() {
            return Err(Error::NoScope {
                task,
                intent: Box::new(intent),
            });
        }
        intent.reset_route();
        intent.local = self.local_chain();
        if intent.local.is_some() || self.judging.get() > 0 {
            // The stack is only read while the hooks run, so a hook may still
            // look at it (`airlock::buffered()`).
            let _hook = HookGuard::enter(self);
            if let Err((policy, violation)) = check_on_enqueue(&intent, &frames) {
                return Err(Error::PolicyViolation {
                    task,
                    policy,
                    violation,
                    intent: Box::new(intent),
                });
            }
        }
        drop(frames);
        let Ok(mut frames) = self.frames.try_borrow_mut() else {
            return Err(Error::EnqueueInHook {
                task,
                intent: Box::new(intent),
            });
        };
        let top = frames.last_mut().expect("checked above");
        match (&top.shared, top.is_remote()) {
            (Some(shared), true) => {
                let shared = Arc::clone(shared);
                // Refused intents leave the stack's borrow first: their
                // payload's `Drop` may call back into airlock.
                drop(frames);
                shared
                    .push_one(intent)
                    .map_err(|intent| StateError::ended(intent).into())
            }
            _ => {
                if top.intents.capacity() == 0 {
                    // A scope takes a buffer at its first intent, so that
                    // scopes that buffer nothing never touch the pool.
                    top.intents = self.take_buffer();
                }
                top.intents.push(intent);
                Ok(())
            }
        }
    }

    /// The policies of the current scope and its enclosing scopes, innermost
    /// first, as a handle to it must see them.
    pub(crate) fn scope_policies(frames: &[Frame]) -> Vec<Arc<dyn Policy>> {
        let mut policies = Vec::new();
        for frame in frames.iter().rev() {
            match (&frame.shared, frame.is_remote()) {
                (Some(shared), true) => {
                    policies.extend(shared.policies.iter().cloned());
                    break;
                }
                _ => policies.extend(frame.policy().cloned()),
            }
        }
        policies
    }

    /// Whether the defaults in force are the built-in ones: one atomic load
    /// when nothing changed since the last look.
    #[inline]
    pub(crate) fn defaults_are_builtin(&self) -> bool {
        let generation = config::generation();
        if self.builtin_at.get() == generation {
            return true;
        }
        let builtin = self.with_defaults(|d| d.config.is_none());
        let overridden = self.defaults_override.borrow().is_some();
        if builtin && !overridden {
            self.builtin_at.set(generation);
        }
        builtin
    }

    /// Reads the defaults in force: the thread's override, else the global
    /// ones, cached until they change.
    #[inline]
    pub(crate) fn with_defaults<R>(&self, f: impl FnOnce(&Defaults) -> R) -> R {
        if let Some(defaults) = &*self.defaults_override.borrow() {
            return f(defaults);
        }
        let generation = config::generation();
        let mut cache = self.defaults_cache.borrow_mut();
        match &*cache {
            Some((seen, defaults)) if *seen == generation => f(defaults),
            _ => {
                let defaults = config::global();
                let result = f(&defaults);
                let stale = cache.replace((generation, defaults));
                // Dropped after the borrow ends: a policy's `Drop` may read
                // the defaults.
                drop(cache);
                drop(stale);
                result
            }
        }
    }
}

/// Runs `on_enqueue` of the local regions, then of every enclosing scope,
/// innermost first (rule 9); the first rejection names its policy.
#[inline]
fn check_on_enqueue(
    intent: &Intent,
    frames: &[Frame],
) -> std::result::Result<(), (&'static str, crate::policy::Violation)> {
    if let Some(local) = &intent.local {
        local.iter().try_for_each(|p| p.rejected_by(intent))?;
    }
    for frame in frames.iter().rev() {
        if let Some(policy) = frame.policy() {
            policy.rejected_by(intent)?;
        }
        if let (Some(shared), true) = (&frame.shared, frame.is_remote()) {
            shared
                .policies
                .iter()
                .try_for_each(|p| p.rejected_by(intent))?;
            break;
        }
    }
    Ok(())
}

pub(crate) fn with_defaults_ref<R>(f: impl FnOnce(&Defaults) -> R) -> R {
    let mut f = Some(f);
    match CONTEXT.try_with(|cx| cx.with_defaults(f.take().expect("called once"))) {
        Ok(result) => result,
        // Thread teardown: this thread's override and cache are gone.
        Err(_) => (f.expect("not called: the context was gone"))(&config::global()),
    }
}

/// [`with_defaults_ref`] that never panics: during thread teardown, or while
/// this thread's defaults are being changed, it reads the global ones.
pub(crate) fn try_with_defaults_ref<R>(f: impl FnOnce(&Defaults) -> R) -> Option<R> {
    let mut f = Some(f);
    let local = CONTEXT.try_with(|cx| {
        let overridden = cx.defaults_override.try_borrow().ok()?;
        if let Some(defaults) = &*overridden {
            return Some((f.take()?)(defaults));
        }
        drop(overridden);
        let cache = cx.defaults_cache.try_borrow().ok()?;
        match &*cache {
            Some((seen, defaults)) if *seen == config::generation() => Some((f.take()?)(defaults)),
            _ => None,
        }
    });
    match local {
        Ok(Some(result)) => Some(result),
        _ => f.map(|f| config::try_global().map(|d| f(&d)))?,
    }
}

/// Sets the thread's defaults override and restores the previous one on drop.
pub(crate) struct DefaultsOverride {
    previous: Option<Defaults>,
}

impl DefaultsOverride {
    /// [`DefaultsOverride::set`] that does nothing once the thread's state is
    /// torn down: for use in `Drop`.
    pub(crate) fn try_set(defaults: Option<Defaults>) -> Option<Self> {
        let previous = CONTEXT
            .try_with(|cx| {
                cx.builtin_at.set(u64::MAX);
                cx.defaults_override
                    .try_borrow_mut()
                    .ok()
                    .map(|mut o| o.take())
            })
            .ok()
            .flatten()?;
        let guard = DefaultsOverride { previous };
        let _ = CONTEXT.try_with(|cx| {
            if let Ok(mut current) = cx.defaults_override.try_borrow_mut() {
                *current = defaults;
            }
        });
        Some(guard)
    }

    pub(crate) fn set(defaults: Option<Defaults>) -> Self {
        let previous = CONTEXT.with(|cx| {
            cx.builtin_at.set(u64::MAX);
            cx.defaults_override.replace(defaults)
        });
        DefaultsOverride { previous }
    }

    /// Restores the previous override, returning the one that was in force.
    pub(crate) fn restore(mut self) -> Option<Defaults> {
        let previous = self.previous.take();
        let current = CONTEXT.with(|cx| {
            cx.builtin_at.set(u64::MAX);
            cx.defaults_override.replace(previous)
        });
        std::mem::forget(self);
        current
    }
}

impl Drop for DefaultsOverride {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // During thread teardown the context may be gone: nothing to restore.
        let _ = CONTEXT.try_with(|cx| {
            cx.builtin_at.set(u64::MAX);
            cx.defaults_override.replace(previous)
        });
    }
}
