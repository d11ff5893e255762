//! The per-thread state: the stack of current scopes, the one buffer they
//! share, the local policy regions in force, and the cached defaults.
//!
//! Every scope on the stack keeps its intents in the thread's one buffer,
//! from the index where it was pushed (its mark) up to the next scope's mark:
//! enqueueing is one push, a nested scope captured by its parent moves
//! nothing (its part simply becomes the parent's), and a discard truncates.
//! A scope leaves the stack with its part (a guard, an
//! [`ActiveScope`](crate::ActiveScope), a future between polls) and brings it
//! back when it is current again, as tokio's `TaskLocalFuture` swaps its value
//! in around every poll; the outermost scope's part is the whole buffer, and
//! moves as one pointer. Enqueueing therefore touches only this thread's
//! memory: no lock, no atomic.

use std::cell::{Cell, RefCell, RefMut};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// While the frame is on the stack: where its part of the thread's buffer
    /// starts. Its part ends where the next frame's starts.
    pub(crate) mark: usize,
    /// `None` for a scope with every built-in default: the common case costs
    /// no pointer chasing.
    pub(crate) config: Option<Arc<Config>>,
    /// Its own intents while it is off the stack; empty while on it (they are
    /// in the thread's buffer then).
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

/// Marks the id of a remote frame (frame ids never reach the top bit).
const REMOTE: u64 = 1 << 63;

/// Frame ids are unique in the process, not only on a thread: a scope future
/// moves between threads, and a frame is found on a stack by its id. Each
/// thread takes a block of 2^32 ids at a time from this counter (one atomic
/// operation per thread, not per scope); a block's number is the id's upper
/// half, below [`REMOTE`]'s bit.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
/// The lower half of an id: its number in the thread's block.
const IN_BLOCK: u64 = (1 << 32) - 1;

/// A scope's WHAT, HOW and WHEN, where they differ from the built-ins.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) policy: Option<Arc<dyn Policy>>,
    pub(crate) executor: Option<Arc<dyn Executor>>,
    pub(crate) kind: Option<Arc<dyn ScopeKind>>,
    /// Whether the policy checks enqueues ([`Policy::checks_enqueue`]), asked
    /// once.
    pub(crate) checks: bool,
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
        let checks = policy.as_ref().is_some_and(|p| p.checks_enqueue());
        Some(Arc::new(Config {
            policy,
            executor,
            kind,
            checks,
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
            mark: 0,
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
            mark: 0,
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

    /// Whether a policy checks enqueues made while this frame is on the
    /// stack.
    #[inline]
    fn judges(&self) -> bool {
        self.is_remote() || self.config.as_ref().is_some_and(|c| c.checks)
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

    /// How many intents it holds, captured ones included, given its own
    /// (see [`Context::with_own`]).
    pub(crate) fn len(&self, own: &[Intent]) -> usize {
        own.len() + self.captured.as_ref().map_or(0, |c| c.len())
    }

    /// Clones of its intents, laid out flat, given its own.
    pub(crate) fn snapshot(&self, own: &[Intent]) -> Vec<Intent> {
        crate::buffer::snapshot(own, self.captured.as_deref())
    }
}

/// A frame on the stack. Held as `ManuallyDrop` so that a plain frame leaves
/// the stack with no drop glue ([`Context::drop_plain_top`]); every other way
/// off the stack takes the frame out whole, and the context drops what is
/// left when the thread ends.
pub(crate) type Slot = ManuallyDrop<Frame>;

/// The stack of current scopes and the one buffer they share, in one cell:
/// a scope's push, an enqueue and a scope's end each borrow it once. (A
/// cell each cost every nested scope four more borrow-flag round trips, a
/// write and a read that waits for it: `nested_capture` took 12.4 ns
/// against 11.1.)
pub(crate) struct Stack {
    pub(crate) frames: Vec<Slot>,
    /// The intents of every frame on the stack, each frame's from its mark.
    pub(crate) buffer: Vec<Intent>,
}

pub(crate) struct Context {
    pub(crate) stack: RefCell<Stack>,
    /// How many frames on the stack have a policy to consult at enqueue, so
    /// that an enqueue with none skips the walk.
    judging: Cell<usize>,
    /// The local policy regions in force, innermost first, while `region`
    /// is [`IN_LOCAL`].
    local: Cell<Option<PolicyChain>>,
    /// Where the chain of the local policy regions in force is:
    /// [`NO_REGION`] (none in force), [`IN_LOCAL`], or lent to an intent:
    /// the index in the thread's buffer of the first intent enqueued in the
    /// innermost region, which took the region's own reference (`local` is
    /// then `None`).
    ///
    /// Lending saves two atomic reference counts per region: the intent
    /// takes the region's reference instead of a clone, and a region that
    /// ends with its chain lent has nothing to release. The chain is taken
    /// back, as a clone, before anything moves intents out of the buffer or
    /// from one index to another ([`settle_local`](Self::settle_local));
    /// pushes only append, so until then the intent stays where it was.
    /// One word, so the common enqueue tells that no region is in force with
    /// one comparison.
    region: Cell<usize>,
    /// The address of the lent chain ([`PolicyChain::addr`]): what is taken
    /// back is checked to be it.
    lent_addr: Cell<usize>,
    in_hook: Cell<bool>,
    next_id: Cell<u64>,
    defaults_override: RefCell<Option<Defaults>>,
    defaults_cache: RefCell<Option<(u64, Defaults)>>,
    /// The generation at which the defaults in force were last seen to be the
    /// built-in ones (`u64::MAX`: not known to be), so a plain scope can skip
    /// reading them.
    builtin_at: Cell<u64>,
    /// Small empty buffers, for frames that leave the stack with a part that
    /// does not start at the bottom of the thread's buffer.
    pool: RefCell<Vec<Vec<Intent>>>,
}

/// `Context::region` with no local policy region in force.
const NO_REGION: usize = usize::MAX;
/// `Context::region` with the local chain in `Context::local`.
const IN_LOCAL: usize = usize::MAX - 1;

/// Buffers larger than this go to the pool only as the thread's buffer.
const POOLED_CAPACITY: usize = 64;
/// How many small empty buffers a thread keeps.
const POOL_SIZE: usize = 8;
/// The largest buffer a thread keeps between scopes, in bytes (about 210,000
/// intents): a steady workload stops allocating and faulting in its buffer,
/// and a burst larger than this gives its memory back.
const KEPT_BYTES: usize = 8 << 20;
/// The thread's buffer grows by a quarter of its length at a time, not
/// double: at any length at most a fifth of it is spare (a buffered intent
/// costs at most 1.25 times its 40 bytes), still amortised O(1) per push. The
/// buffer is kept between scopes, so a steady workload stops growing it.
const MIN_GROWTH: usize = 16;
// The figure the growth rate and `benches/heap.rs`'s budget are set for.
const _: () = assert!(size_of::<Intent>() <= 40);

thread_local! {
    pub(crate) static CONTEXT: Context = const {
        Context {
            stack: RefCell::new(Stack {
                frames: Vec::new(),
                buffer: Vec::new(),
            }),
            judging: Cell::new(0),
            local: Cell::new(None),
            region: Cell::new(NO_REGION),
            lent_addr: Cell::new(0),
            in_hook: Cell::new(false),
            // The first id takes a block.
            next_id: Cell::new(IN_BLOCK),
            defaults_override: RefCell::new(None),
            defaults_cache: RefCell::new(None),
            builtin_at: Cell::new(u64::MAX),
            pool: RefCell::new(Vec::new()),
        }
    };
}

/// [`CONTEXT`]`.with(f)` for the hot paths. `with` was compiled as a call
/// that reached the thread-local through the key's accessor function, once
/// per visit; `try_with`, which is marked inline, reaches it directly.
#[inline(always)]
pub(crate) fn with_context<R>(f: impl FnOnce(&Context) -> R) -> R {
    match CONTEXT.try_with(f) {
        Ok(result) => result,
        Err(error) => context_gone(error),
    }
}

#[cold]
fn context_gone(error: std::thread::AccessError) -> ! {
    panic!("airlock: the thread's scope state was used while the thread was ending: {error}")
}

impl Drop for Context {
    fn drop(&mut self) {
        // Scopes still current when the thread ends (leaked `ActiveScope`s)
        // end here: their handles close.
        for frame in self.stack.get_mut().frames.drain(..) {
            drop(ManuallyDrop::into_inner(frame));
        }
    }
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
        if id & IN_BLOCK == 0 {
            return self.next_block();
        }
        self.next_id.set(id);
        id
    }

    /// The thread's first id, or its block is used up: a new block.
    #[cold]
    fn next_block(&self) -> u64 {
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        // 2^31 blocks of 2^32 ids each: not reached by any real process.
        // (The last block is left out: its last remote id would be
        // `Enclosing::ROOT`.)
        assert!(
            block < (REMOTE >> 32) - 1,
            "airlock: scope frame ids exhausted"
        );
        let id = block << 32 | 1;
        self.next_id.set(id);
        id
    }

    #[inline]
    pub(crate) fn take_buffer(&self) -> Vec<Intent> {
        self.pool.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps an emptied buffer for the next scope: as the thread's buffer if
    /// that is empty and smaller (up to [`KEPT_BYTES`]), else in the pool if
    /// it is small.
    #[inline(always)]
    pub(crate) fn recycle(&self, buffer: Vec<Intent>) {
        if buffer.capacity() == 0 {
            // Never allocated, so it holds nothing to drop or free: skip the
            // drop glue on the hot path of scopes that buffer nothing.
            std::mem::forget(buffer);
        } else {
            self.keep(buffer);
        }
    }

    /// [`recycle`](Context::recycle) for an emptied buffer that was the
    /// thread's: the common case is one check.
    #[inline]
    pub(crate) fn give_back(&self, buffer: Vec<Intent>) {
        match self.stack.try_borrow_mut() {
            Ok(mut stack)
                if stack.buffer.capacity() == 0
                    && buffer.is_empty()
                    && buffer.capacity() * size_of::<Intent>() <= KEPT_BYTES =>
            {
                // The one it replaces never allocated: nothing to drop.
                std::mem::forget(std::mem::replace(&mut stack.buffer, buffer));
            }
            _ => self.recycle(buffer),
        }
    }

    fn keep(&self, mut buffer: Vec<Intent>) {
        // Payloads drop before any borrow: their `Drop` may call airlock.
        buffer.clear();
        let capacity = buffer.capacity();
        let spare = match self.stack.try_borrow_mut() {
            Ok(mut stack)
                if stack.buffer.is_empty()
                    && stack.buffer.capacity() < capacity
                    && capacity * size_of::<Intent>() <= KEPT_BYTES =>
            {
                std::mem::replace(&mut stack.buffer, buffer)
            }
            _ => buffer,
        };
        self.pool_spare(spare);
    }

    /// Keeps a small empty buffer for the next frame that leaves the stack
    /// with a part not at the bottom of the thread's buffer. Speed only.
    fn pool_spare(&self, spare: Vec<Intent>) {
        if spare.capacity() == 0 || spare.capacity() > POOLED_CAPACITY {
            return;
        }
        if let Ok(mut pool) = self.pool.try_borrow_mut()
            && pool.len() < POOL_SIZE
        {
            pool.push(spare);
        }
    }

    /// Pushes onto the thread's buffer, growing it by a quarter (see
    /// [`MIN_GROWTH`]).
    #[inline(always)]
    pub(crate) fn push_intent(buffer: &mut Vec<Intent>, intent: Intent) {
        if buffer.len() == buffer.capacity() {
            Self::grow(buffer);
        }
        buffer.push(intent);
    }

    #[cold]
    fn grow(buffer: &mut Vec<Intent>) {
        buffer.reserve_exact((buffer.len() / 4).max(MIN_GROWTH));
    }

    /// Calls `f` with the frame at `index` of the stack and its own intents:
    /// its part of the thread's buffer.
    pub(crate) fn with_own<R>(
        stack: &Stack,
        index: usize,
        f: impl FnOnce(&Frame, &[Intent]) -> R,
    ) -> Option<R> {
        let frame = stack.frames.get(index)?;
        let end = stack
            .frames
            .get(index + 1)
            .map_or(stack.buffer.len(), |next| next.mark);
        Some(f(frame, &stack.buffer[frame.mark..end]))
    }

    /// Appends intents to the part of the frame at `index`: at the end of the
    /// buffer for the top frame, else where the next frame's part starts
    /// (whose marks then move up).
    pub(crate) fn extend_part(
        &self,
        stack: &mut Stack,
        index: usize,
        intents: impl IntoIterator<Item = Intent>,
    ) {
        // A splice moves the intents above it.
        self.settle_local_in(&stack.buffer);
        let Stack { frames, buffer } = stack;
        let Some(end) = frames.get(index + 1).map(|next| next.mark) else {
            buffer.extend(intents);
            return;
        };
        let before = buffer.len();
        buffer.splice(end..end, intents);
        let added = buffer.len() - before;
        for frame in &mut frames[index + 1..] {
            frame.mark += added;
        }
    }

    /// Brings a frame's own intents into the thread's buffer, from its mark.
    /// Returns the emptied allocation they leave, to recycle once the stack
    /// is no longer borrowed.
    #[inline]
    fn attach(buffer: &mut Vec<Intent>, frame: &mut Frame) -> Vec<Intent> {
        frame.mark = buffer.len();
        // A frame on the stack holds no buffer of its own: its intents, and
        // the allocation they came in, go to the thread's.
        if frame.intents.capacity() == 0 {
            return Vec::new();
        }
        Self::attach_intents(buffer, frame)
    }

    fn attach_intents(buffer: &mut Vec<Intent>, frame: &mut Frame) -> Vec<Intent> {
        if buffer.is_empty() && buffer.capacity() <= frame.intents.capacity() {
            // The bottom part: the frame's buffer becomes the thread's.
            std::mem::replace(buffer, std::mem::take(&mut frame.intents))
        } else {
            buffer.append(&mut frame.intents);
            std::mem::take(&mut frame.intents)
        }
    }

    /// Takes the frame's part of the thread's buffer (up to `end`) as its own
    /// intents. The bottom part, when it is the whole buffer, moves as one
    /// pointer.
    fn detach(&self, stack: &mut Stack, frame: &mut Frame, end: Option<usize>) {
        self.settle_local_in(&stack.buffer);
        let end = end.unwrap_or(stack.buffer.len());
        frame.intents = self.split_part(&mut stack.buffer, frame.mark, end);
    }

    /// Takes `buffer[start..end]` out: the whole buffer as one pointer when
    /// that is the part, else into a pooled buffer.
    fn split_part(&self, buffer: &mut Vec<Intent>, start: usize, end: usize) -> Vec<Intent> {
        if start == end {
            return Vec::new();
        }
        if start == 0 && end == buffer.len() {
            return std::mem::take(buffer);
        }
        let mut part = self.take_buffer();
        part.extend(buffer.drain(start..end));
        part
    }

    /// Takes the thread's buffer from `start` to its end: the part of a frame
    /// just popped off the top of the stack.
    pub(crate) fn take_part(&self, start: usize) -> Vec<Intent> {
        let mut stack = self.stack.borrow_mut();
        self.settle_local_in(&stack.buffer);
        let end = stack.buffer.len();
        self.split_part(&mut stack.buffer, start, end)
    }

    /// A clone of the local policy chain in force.
    #[inline]
    pub(crate) fn local_chain(&self) -> Option<PolicyChain> {
        match self.region.get() {
            NO_REGION => None,
            IN_LOCAL => self.with_local(Option::clone),
            lent => Some(self.lent_chain(lent)),
        }
    }

    /// Whether the chain in force is in `local`, not lent (nor absent).
    #[inline]
    fn chain_in_local(&self) -> bool {
        self.region.get() == IN_LOCAL
    }

    /// Calls `f` with `local`, left in place.
    #[inline]
    fn with_local<R>(&self, f: impl FnOnce(&Option<PolicyChain>) -> R) -> R {
        let chain = self.local.take();
        let result = f(&chain);
        self.local.set(chain);
        result
    }

    /// A clone of the chain lent to the intent at `at` of the buffer.
    fn lent_chain(&self, at: usize) -> PolicyChain {
        let stack = self
            .stack
            .try_borrow()
            .expect("airlock: a lent local policy chain was read while the buffer was busy");
        self.lent_chain_in(&stack.buffer, at)
    }

    /// [`lent_chain`](Context::lent_chain), in `buffer`.
    fn lent_chain_in(&self, buffer: &[Intent], at: usize) -> PolicyChain {
        buffer
            .get(at)
            .and_then(|intent| intent.local().cloned())
            .filter(|chain| chain.addr() == self.lent_addr.get())
            .expect("airlock: a lent local policy chain moved in the buffer unsettled")
    }

    /// Takes a lent chain back (see [`Context::region`]): to be called
    /// before intents move out of the buffer or within it.
    #[inline]
    pub(crate) fn settle_local(&self) {
        let region = self.region.get();
        if region < IN_LOCAL {
            self.settle_lent(region);
        }
    }

    /// [`settle_local`](Context::settle_local), for a caller that holds the
    /// stack: `buffer` is its buffer.
    #[inline]
    fn settle_local_in(&self, buffer: &[Intent]) {
        let region = self.region.get();
        if region < IN_LOCAL {
            self.settle_lent_in(buffer, region);
        }
    }

    #[cold]
    fn settle_lent(&self, at: usize) {
        let chain = self.lent_chain(at);
        self.local.set(Some(chain));
        self.region.set(IN_LOCAL);
    }

    #[cold]
    fn settle_lent_in(&self, buffer: &[Intent], at: usize) {
        let chain = self.lent_chain_in(buffer, at);
        self.local.set(Some(chain));
        self.region.set(IN_LOCAL);
    }

    /// Puts `chain` in `local`, with `region` to match, and returns the
    /// chain it replaces.
    #[inline]
    fn set_local(&self, chain: Option<PolicyChain>) -> Option<PolicyChain> {
        self.region
            .set(if chain.is_some() { IN_LOCAL } else { NO_REGION });
        self.local.replace(chain)
    }

    /// Puts `chain` in force as the local regions' chain and returns the one
    /// it replaces, settled: for a region or a region's future to keep
    /// while it is in force.
    #[inline]
    pub(crate) fn replace_local(&self, chain: Option<PolicyChain>) -> Option<PolicyChain> {
        self.settle_local();
        self.set_local(chain)
    }

    /// Opens a local policy region: the chain `make` builds on the chain in
    /// force (settled) comes into force. Returns the chain it replaces, for
    /// the region to put back when it ends ([`restore_local`](Self::restore_local)).
    #[inline]
    pub(crate) fn open_region(
        &self,
        make: impl FnOnce(Option<PolicyChain>) -> PolicyChain,
    ) -> Option<PolicyChain> {
        self.settle_local();
        let previous = self.local.take();
        self.set_local(Some(make(previous.clone())));
        previous
    }

    /// Puts back the chain a region replaced when it ends
    /// ([`open_region`](Self::open_region), [`replace_local`](Self::replace_local)).
    /// Its own chain is released or, if it is lent, stays with the intent that
    /// took it.
    #[inline]
    pub(crate) fn restore_local(&self, previous: Option<PolicyChain>) {
        drop(self.set_local(previous));
    }

    #[inline]
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Frame> {
        if self.in_hook() {
            return Err(frame);
        }
        self.push_frame(frame);
        Ok(())
    }

    /// [`push`](Context::push), for a caller that checked it is not in a
    /// hook.
    #[inline]
    pub(crate) fn push_frame(&self, mut frame: Frame) {
        let mut stack = self.stack.borrow_mut();
        let emptied = Self::attach(&mut stack.buffer, &mut frame);
        if frame.judges() {
            self.judging.set(self.judging.get() + 1);
        }
        stack.frames.push(ManuallyDrop::new(frame));
        drop(stack);
        self.recycle(emptied);
    }

    /// Pushes a frame with the built-in settings, where the caller checked
    /// that they are in force and that no hook is running, and returns its
    /// id. The frame is made in place, where it lands on the stack.
    #[inline(always)]
    pub(crate) fn push_plain(&self) -> u64 {
        let id = self.next_id();
        let mut stack = self.stack.borrow_mut();
        let mark = stack.buffer.len();
        stack.frames.push(ManuallyDrop::new(Frame {
            mark,
            ..Frame::local(id, None, Vec::new())
        }));
        id
    }

    /// Drops the top frame, which the caller checked holds nothing (no
    /// settings, handle, intents of its own or chunks): its part of the
    /// buffer stays where it is.
    #[inline]
    pub(crate) fn drop_plain_top(&self, frames: &mut Vec<Slot>) {
        debug_assert!(
            frames
                .last()
                .is_some_and(|f| !f.judges() && f.intents.capacity() == 0)
        );
        frames.truncate(frames.len() - 1);
    }

    /// A frame left the stack: one fewer policy checks enqueues, if its did.
    /// Speed only: the count lets an enqueue skip the walk over the stack.
    #[inline]
    fn unjudge(&self, frame: &Frame) {
        if frame.judges() {
            self.judging.set(self.judging.get() - 1);
        }
    }

    /// Removes the frame `id` if it is the current one, with its intents.
    pub(crate) fn pop_top(&self, id: u64) -> Option<Frame> {
        self.pop_top_in(&mut self.stack.borrow_mut(), id)
    }

    #[inline]
    fn pop_top_in(&self, stack: &mut Stack, id: u64) -> Option<Frame> {
        if stack.frames.last()?.id != id {
            return None;
        }
        let mut frame = ManuallyDrop::into_inner(stack.frames.pop()?);
        self.unjudge(&frame);
        self.detach(stack, &mut frame, None);
        Some(frame)
    }

    /// Removes the frame `id` from the stack, with its intents. It is normally
    /// on top; if scopes entered after it were leaked (an `ActiveScope`
    /// forgotten while entered), it is taken from below them and they stay
    /// current.
    #[inline]
    pub(crate) fn pop(&self, id: u64) -> Option<Frame> {
        let mut stack = self.stack.borrow_mut();
        if let Some(frame) = self.pop_top_in(&mut stack, id) {
            return Some(frame);
        }
        let at = stack.frames.iter().rposition(|f| f.id == id)?;
        tracing::warn!(
            target: "airlock",
            "a scope ended while scopes entered after it were still current; \
             exit ActiveScopes in the reverse order of entering them"
        );
        let mut frame = ManuallyDrop::into_inner(stack.frames.remove(at));
        self.unjudge(&frame);
        let end = stack.frames[at].mark;
        self.detach(&mut stack, &mut frame, Some(end));
        let moved = end - frame.mark;
        for above in &mut stack.frames[at..] {
            above.mark -= moved;
        }
        Some(frame)
    }

    /// The thread's stack, if an enqueue now is the common one: no hook
    /// running, no local policy region, no policy on the stack that checks
    /// enqueues, the current scope this thread's own, and room in the buffer.
    /// Then nothing can refuse an intent and enqueueing it is one push.
    #[inline(always)]
    fn plain_stack(&self) -> Option<RefMut<'_, Stack>> {
        if self.in_hook() || self.judging.get() > 0 || self.region.get() != NO_REGION {
            return None;
        }
        let stack = self.stack.try_borrow_mut().ok()?;
        if stack.frames.last().is_none_or(|top| top.is_remote()) {
            return None;
        }
        (stack.buffer.len() < stack.buffer.capacity()).then_some(stack)
    }

    /// Enqueues `intent`: the common case inline (see
    /// [`plain_stack`](Context::plain_stack)), every other one in
    /// [`enqueue_checked`](Context::enqueue_checked).
    ///
    /// The error is boxed so that the common path returns one word, not an
    /// `Error`'s nine.
    #[inline(always)]
    pub(crate) fn enqueue(&self, intent: impl Into<Intent>) -> std::result::Result<(), Box<Error>> {
        // Converted here, inside the thread-local's access, so that it is
        // written where it lands; and before the buffer is borrowed, since a
        // conversion of the caller's may call airlock.
        let mut intent = intent.into();
        let Some(mut stack) = self.plain_stack() else {
            return self.enqueue_boxed(intent);
        };
        intent.enter_plain();
        stack.buffer.push(intent);
        Ok(())
    }

    /// [`enqueue_checked`](Context::enqueue_checked), its error boxed out of
    /// line: the inline path then holds no `Error` on its stack.
    #[inline(never)]
    fn enqueue_boxed(&self, intent: Intent) -> std::result::Result<(), Box<Error>> {
        self.enqueue_checked(intent).map_err(Box::new)
    }

    /// Whether an intent enqueued now, with no hook running and `frames`
    /// the stack, takes the chain of the local policy regions in force
    /// itself: the first one a region sends to this thread's buffer takes
    /// the region's own chain (see [`region`](Context::region)); every other
    /// one, a clone. One that policy hooks are about to see takes a clone
    /// too: a hook that unwinds would take the chain with it.
    #[inline(always)]
    fn lends(&self, frames: &[Slot]) -> bool {
        self.chain_in_local()
            && self.judging.get() == 0
            && frames.last().is_some_and(|top| !top.is_remote())
            && !self.with_local(|chain| chain.as_ref().is_some_and(PolicyChain::checks))
    }

    /// Enqueues `intent`, checking everything.
    #[inline]
    fn enqueue_checked(&self, mut intent: Intent) -> Result<()> {
        if self.in_hook() {
            return Err(Error::EnqueueInHook {
                task: intent.name(),
                intent: Box::new(intent),
            });
        }
        // Busy only if airlock is re-entered from code it runs while it holds
        // the stack (a payload's `Drop`): refuse rather than panic.
        let Ok(stack) = self.stack.try_borrow() else {
            return Err(Error::EnqueueInHook {
                task: intent.name(),
                intent: Box::new(intent),
            });
        };
        let frames = &stack.frames;
        if frames.is_empty() {
            return Err(Error::NoScope {
                task: intent.name(),
                intent: Box::new(intent),
            });
        }
        if self.lends(frames) {
            drop(stack);
            return self.enqueue_lending(intent);
        }
        intent.enter(self.local_chain());
        if intent.local().is_some_and(PolicyChain::checks) || self.judging.get() > 0 {
            // The stack is only read while the hooks run, so a hook may still
            // look at it (`airlock::buffered()`).
            let _hook = HookGuard::enter(self);
            if let Err((policy, violation)) = check_on_enqueue(&intent, frames) {
                return Err(Error::PolicyViolation {
                    task: intent.name(),
                    policy,
                    violation,
                    intent: Box::new(intent),
                });
            }
        }
        let top = frames.last().expect("checked above");
        if let (Some(shared), true) = (&top.shared, top.is_remote()) {
            let shared = Arc::clone(shared);
            // Refused intents leave the stack's borrow first: their
            // payload's `Drop` may call back into airlock.
            drop(stack);
            return shared
                .push_one(intent)
                .map_err(|intent| StateError::ended(intent).into());
        }
        // Read until here, and written from here: nothing runs between.
        drop(stack);
        let Ok(mut stack) = self.stack.try_borrow_mut() else {
            return Err(Self::busy(intent));
        };
        Self::push_intent(&mut stack.buffer, intent);
        Ok(())
    }

    /// Enqueues `intent` into this thread's buffer with the chain in force
    /// lent to it (see `region`): no hook runs. It is set out from where it
    /// lands, after the push, so that nothing reads it back between.
    #[inline(always)]
    fn enqueue_lending(&self, mut intent: Intent) -> Result<()> {
        // One enqueued again drops the route it had here, outside the
        // stack's borrow: a policy's `Drop` may call airlock.
        intent.enter_plain();
        let Ok(mut stack) = self.stack.try_borrow_mut() else {
            return Err(Self::busy(intent));
        };
        let buffer = &mut stack.buffer;
        let chain = self.local.take();
        if let Some(chain) = &chain {
            self.region.set(buffer.len());
            self.lent_addr.set(chain.addr());
        }
        Self::push_intent(buffer, intent);
        buffer.last_mut().expect("pushed above").enter(chain);
        Ok(())
    }

    /// The error for an enqueue while airlock holds the buffer (a payload's
    /// `Drop` calling back into it).
    #[cold]
    fn busy(intent: Intent) -> Error {
        Error::EnqueueInHook {
            task: intent.name(),
            intent: Box::new(intent),
        }
    }

    /// The policies of the current scope and its enclosing scopes, innermost
    /// first, as a handle to it must see them.
    pub(crate) fn scope_policies(frames: &[Slot]) -> Vec<Arc<dyn Policy>> {
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
    #[inline(always)]
    pub(crate) fn defaults_are_builtin(&self) -> bool {
        let generation = config::generation();
        if self.builtin_at.get() == generation {
            return true;
        }
        self.check_builtin(generation)
    }

    #[inline(never)]
    fn check_builtin(&self, generation: u64) -> bool {
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
    frames: &[Slot],
) -> std::result::Result<(), (&'static str, crate::policy::Violation)> {
    if let Some(local) = intent.local() {
        local.iter().try_for_each(|p| p.rejected_by(intent))?;
    }
    for frame in frames.iter().rev() {
        if let Some(config) = &frame.config
            && let Some(policy) = config.policy.as_ref().filter(|_| config.checks)
        {
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

#[cfg(test)]
mod tests {
    //! The thread's buffer: kept between scopes up to its cap, grown by a
    //! quarter. Memory, not behaviour: the behaviour tests cannot see it.
    //! And frame ids, unique in the process.
    use super::*;
    use crate::{DropAll, Run, Scope, Task};

    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Nop;

    impl Task for Nop {
        const NAME: &'static str = "nop";
        fn run(self) -> Run {
            Run::ok()
        }
    }

    fn kept_capacity() -> usize {
        CONTEXT.with(|cx| cx.stack.borrow().buffer.capacity())
    }

    /// A region's chain lent to an intent is checked when it is taken back:
    /// an intent of another chain found where it was lent (which only a
    /// path that moved intents without settling could cause) is a bug, told
    /// at once rather than judged by the wrong policies.
    #[test]
    #[should_panic(expected = "a lent local policy chain moved in the buffer unsettled")]
    fn a_lent_chain_is_checked_when_taken_back() {
        let mut other = Intent::new(Nop);
        other.enter(Some(PolicyChain::push(None, crate::AllowAll)));
        let _ = crate::scope(|| {
            crate::with_policy(DropAll, || {
                crate::enqueue(Nop)?;
                CONTEXT.with(|cx| {
                    let lent = std::mem::replace(&mut cx.stack.borrow_mut().buffer[0], other);
                    drop(lent);
                    cx.settle_local();
                });
                Ok::<_, crate::Error>(())
            })
        });
    }

    fn buffer_scope(n: usize) {
        Scope::new()
            .policy(DropAll)
            .run(|| (0..n).try_for_each(|_| crate::enqueue(Nop)))
            .unwrap();
    }

    #[test]
    fn a_buffer_is_kept_up_to_its_cap() {
        std::thread::spawn(|| {
            assert_eq!(kept_capacity(), 0);
            buffer_scope(1_000);
            let kept = kept_capacity();
            assert!(kept >= 1_000, "kept {kept}");
            // A second scope of the same size reuses it.
            buffer_scope(1_000);
            assert_eq!(kept_capacity(), kept);
            // One larger than the cap gives its memory back.
            let over = KEPT_BYTES / size_of::<Intent>() + 1;
            buffer_scope(over);
            assert_eq!(kept_capacity(), 0);
        })
        .join()
        .unwrap();
    }

    /// The same through the outermost scope that dispatches from the
    /// thread's buffer and gives it back.
    #[test]
    fn a_dispatched_buffer_is_given_back_up_to_its_cap() {
        std::thread::spawn(|| {
            let dispatch = |n: usize| {
                crate::scope(|| (0..n).try_for_each(|_| crate::enqueue(Nop))).unwrap();
            };
            dispatch(1_000);
            let kept = kept_capacity();
            assert!(kept >= 1_000, "kept {kept}");
            dispatch(1_000);
            assert_eq!(kept_capacity(), kept);
            dispatch(KEPT_BYTES / size_of::<Intent>() + 1);
            assert_eq!(kept_capacity(), 0);
            // Small again: kept again.
            dispatch(10);
            assert!(kept_capacity() >= 10);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_buffer_grows_by_a_quarter() {
        let mut buffer = Vec::new();
        let mut capacities = Vec::new();
        for _ in 0..200 {
            Context::push_intent(&mut buffer, Intent::new(Nop));
            if capacities.last() != Some(&buffer.capacity()) {
                capacities.push(buffer.capacity());
            }
        }
        assert_eq!(capacities, [16, 32, 48, 64, 80, 100, 125, 156, 195, 243]);
    }

    /// Enqueueing grows the thread's buffer the same way, whichever path the
    /// enqueue takes.
    #[test]
    fn enqueue_grows_the_buffer_by_a_quarter() {
        std::thread::spawn(|| {
            let mut capacities = Vec::new();
            Scope::new()
                .policy(DropAll)
                .run(|| {
                    for _ in 0..200 {
                        crate::enqueue(Nop)?;
                        if capacities.last() != Some(&kept_capacity()) {
                            capacities.push(kept_capacity());
                        }
                    }
                    Ok::<_, crate::Error>(())
                })
                .unwrap();
            assert_eq!(capacities, [16, 32, 48, 64, 80, 100, 125, 156, 195, 243]);
        })
        .join()
        .unwrap();
    }

    /// Frame ids are unique across threads (a scope future that moves finds
    /// its frame by id), and a thread that uses up its block takes another.
    #[test]
    fn frame_ids_are_unique_in_the_process() {
        let ids = || CONTEXT.with(|cx| [cx.next_id(), cx.next_id()]);
        let here = ids();
        let there = std::thread::spawn(ids).join().unwrap();
        assert_eq!(here[1], here[0] + 1, "ids count up on a thread");
        assert_ne!(
            here[0] >> 32,
            there[0] >> 32,
            "threads take their own blocks"
        );
        for id in here.into_iter().chain(there) {
            assert_ne!(id & IN_BLOCK, 0);
            assert_eq!(id & REMOTE, 0);
        }

        CONTEXT.with(|cx| {
            let block = cx.next_id() & !IN_BLOCK;
            cx.next_id.set(block | (IN_BLOCK - 1));
            assert_eq!(cx.next_id(), block | IN_BLOCK, "a block's last id");
            let next = cx.next_id();
            assert_ne!(next & !IN_BLOCK, block, "then a new block");
            assert_eq!(next & IN_BLOCK, 1);
            assert_eq!(cx.next_id(), next + 1);
        });
    }
}
