//! How an intent is stored: its task held in place when it is small, and its
//! route beside it only when it has one.
//!
//! A boxed task costs one `malloc` when the intent is made and one `free`
//! when it ends. Most tasks are a few words (an id, a `String`, a
//! `Cow<str>`), and most intents have the plain route (no local policy, no
//! extras), so a [`Stored`] has two layouts in the same five words:
//!
//! - **in place**: the task itself, up to [`INLINE_BYTES`] bytes aligned to
//!   at most 8, with the plain route implied (its captured flag is told by
//!   which of the type's two tables the stored value points at);
//! - **spilled**: the route and the task boxed ([`Spilled`]), for a task too
//!   large to hold in place or an intent whose route is more than plain.
//!
//! The intent stays 40 bytes either way: intents are moved and buffered by
//! the thousand, and a wider one costs more than the `malloc` it saves. (A
//! 64-byte intent, task boxed, made the workloads of `benches/workloads.rs`
//! 5-32% slower than a 40-byte one; held in place, it still lost everywhere
//! but `flush_10k_sync`.)
//!
//! Deferred-command queues keep their commands the same way (bevy's
//! `CommandQueue`), as `std::task::RawWaker` does for wakers: raw storage,
//! and a table of functions made for the type it holds. This module is the
//! only `unsafe` code in the crate. Every `unsafe` block relies on one
//! invariant, set up by [`Stored::new`] and kept because the fields are
//! private to this module: **`data` holds an initialised value of the type
//! `H` that `table` was made for (`Table::<T>::FRESH` and `CAPTURED` for `T`,
//! `Table::<T>::SPILLED` for [`Spilled<T>`]), and `H` fits `data`'s size and
//! alignment**, until the value is dropped or consumed by [`Stored::run`],
//! which are the only ways it leaves. Moving a `Stored` moves the bytes of
//! `data` (`MaybeUninit` keeps every byte, pointers' provenance included),
//! which is a move of the value: a task carries no address of its own (it is
//! never pinned).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr;

use crate::intent::{ErasedTask, Route};
use crate::policy::PolicyChain;
use crate::task::{Run, Task};

/// The largest task held in place, in bytes: four words, which hold an id
/// with a `String`, a `Vec` or a `Cow<str>` beside it.
const INLINE_BYTES: usize = size_of::<Storage>();

/// Where the value lies: four words, aligned as one. In an `UnsafeCell`,
/// because a task may have interior mutability (an atomic, a mutex) and use
/// it through the shared references this module hands out: a reference to
/// plain bytes would promise that nothing changes them.
type Storage = MaybeUninit<UnsafeCell<[usize; 4]>>;

/// A task and its route.
///
/// `repr(C)`, the storage first and the table last: an intent is copied in
/// 16-byte pieces and the table pointer is written alone, so no piece copied
/// spans the table and the storage. A read spanning two recent writes cannot
/// be forwarded from the store buffer and stalls; with the table first,
/// every copy of a freshly made intent did (the workloads that enqueued
/// through a slot, as `airlock::enqueue` then did, took 20-40% longer).
#[repr(C)]
pub(crate) struct Stored {
    data: Storage,
    table: &'static VTable,
    /// Sends and shares across threads exactly as a boxed task and a route
    /// would: the only values ever held are a task (`Send + Sync`, as
    /// [`ErasedTask`] requires) or a [`Spilled`] one.
    _held: PhantomData<(Box<dyn ErasedTask>, Route)>,
}

// SAFETY: a `Stored` shares only what it holds: a task, which is `Sync` as
// every task is, or a spilled one (a route, `Sync`, and the task boxed). The
// storage's `UnsafeCell` lets a task use its own interior mutability through
// `&`, which its being `Sync` makes safe across threads; everything else the
// module changes takes `&mut self`.
unsafe impl Sync for Stored {}

/// A spilled intent's storage: its route, and its task boxed. `repr(C)` puts
/// the route first, at the same place for every task type, so reading it
/// needs no call through the table.
#[repr(C)]
struct Spilled<T> {
    route: Route,
    task: Box<T>,
}

/// The functions that know the type stored. Each takes the storage of a
/// `Stored` whose table it is, so by the module's invariant the storage
/// holds an initialised value of the table's type.
///
/// Which of a type's three tables it is tells how the value is stored: the
/// links below say it (`FRESH` alone has `captured`, `CAPTURED` alone has
/// `fresh`, `SPILLED` alone has no `spill`).
struct VTable {
    name: &'static str,
    task: unsafe fn(&Storage) -> &dyn ErasedTask,
    run_cloned: unsafe fn(&Storage) -> Run,
    /// Moves the value out and runs its task: the storage is left
    /// uninitialised.
    run: unsafe fn(&Storage) -> Run,
    clone: unsafe fn(&Storage) -> Stored,
    drop: unsafe fn(&mut Storage),
    /// In-place tables: moves the task into a box, leaving a [`Spilled`]
    /// value with a lean route (local chain, captured flag), whose table is
    /// the second. The route comes in parts, in registers: built on the
    /// stack and read back whole, it would stall the store buffer.
    spill: Option<(SpillFn, &'static VTable)>,
    /// `FRESH`: the table for the same value captured.
    captured: Option<&'static VTable>,
    /// `CAPTURED`: the table for the same value not captured. A function,
    /// because two constants cannot name each other.
    fresh: Option<fn() -> &'static VTable>,
}

/// Moves a task held in place into a box (see [`VTable::spill`]).
type SpillFn = unsafe fn(&mut Storage, Option<PolicyChain>, bool);

/// Whether an `H` fits the storage.
const fn fits<H>() -> bool {
    size_of::<H>() <= INLINE_BYTES && align_of::<H>() <= align_of::<Storage>()
}

const _: () = assert!(
    fits::<Spilled<()>>(),
    "a spilled value must fit the storage"
);

/// The tables for task type `T`.
struct Table<T>(PhantomData<T>);

impl<T: Task> Table<T> {
    const FRESH: &'static VTable = &VTable {
        captured: Some(Self::CAPTURED),
        ..Self::INLINE
    };
    const CAPTURED: &'static VTable = &VTable {
        fresh: Some(Self::fresh_table),
        ..Self::INLINE
    };
    const SPILLED: &'static VTable = &VTable {
        name: T::NAME,
        task: Self::spilled_task,
        run_cloned: Self::spilled_run_cloned,
        run: Self::spilled_run,
        clone: Self::spilled_clone,
        drop: Self::drop::<Spilled<T>>,
        spill: None,
        captured: None,
        fresh: None,
    };

    fn fresh_table() -> &'static VTable {
        Self::FRESH
    }

    /// What `FRESH` and `CAPTURED` share.
    const INLINE: VTable = VTable {
        name: T::NAME,
        task: Self::inline_task,
        run_cloned: Self::inline_run_cloned,
        run: Self::inline_run,
        clone: Self::inline_clone,
        drop: Self::drop::<T>,
        spill: Some((Self::spill, Self::SPILLED)),
        captured: None,
        fresh: None,
    };

    /// # Safety
    ///
    /// `data` holds an initialised `H` that fits it.
    #[inline(always)]
    unsafe fn held<H>(data: &Storage) -> &H {
        // SAFETY: the caller's contract: `data` holds an initialised `H`,
        // aligned since `H` fits the storage's alignment.
        unsafe { &*data.as_ptr().cast::<H>() }
    }

    /// # Safety
    ///
    /// `data` holds an initialised `H` that fits it, which nothing uses or
    /// drops afterwards: the value is moved out.
    #[inline(always)]
    unsafe fn take<H>(data: &Storage) -> H {
        // SAFETY: `data` holds an aligned, initialised `H` (the contract),
        // which the caller never touches again: reading it out is a move.
        unsafe { ptr::read(data.as_ptr().cast::<H>()) }
    }

    /// # Safety
    ///
    /// `data` holds an initialised `H` that fits it, which nothing uses
    /// afterwards.
    unsafe fn drop<H>(data: &mut Storage) {
        // SAFETY: `data` holds an aligned, initialised `H` (the contract),
        // dropped once: nothing uses it afterwards.
        unsafe { ptr::drop_in_place(data.as_mut_ptr().cast::<H>()) }
    }

    // SAFETY (every `inline_*` function): the storage holds a `T`, since
    // only the `FRESH` and `CAPTURED` tables name these functions.

    unsafe fn inline_task(data: &Storage) -> &dyn ErasedTask {
        // SAFETY: see above.
        unsafe { Self::held::<T>(data) }
    }

    unsafe fn inline_run_cloned(data: &Storage) -> Run {
        // SAFETY: see above.
        let task = unsafe { Self::held::<T>(data) };
        Task::run(task.clone())
    }

    unsafe fn inline_run(data: &Storage) -> Run {
        // SAFETY: see above; the caller never uses the storage again.
        Task::run(unsafe { Self::take::<T>(data) })
    }

    unsafe fn inline_clone(data: &Storage) -> Stored {
        // SAFETY: see above.
        let task = unsafe { Self::held::<T>(data) };
        // SAFETY: `FRESH` is made for `T`, which fits (this table was chosen
        // for it): the clone is held in place too. The caller gives it this
        // table, captured flag included.
        unsafe { Stored::hold(task.clone(), Self::FRESH) }
    }

    /// # Safety
    ///
    /// `data` holds a `T` (the storage of a `FRESH` or `CAPTURED` table).
    unsafe fn spill(data: &mut Storage, local: Option<PolicyChain>, captured: bool) {
        // SAFETY: `data` holds a `T`; it is overwritten below before anyone
        // reads it again, and nothing between can unwind (an allocation
        // failure aborts).
        let task = unsafe { Self::take::<T>(data) };
        let spilled = Spilled {
            route: Route::lean_in(local, captured),
            task: Box::new(task),
        };
        // SAFETY: `Spilled<T>` fits the storage (asserted for every `T`
        // above: its size does not depend on `T`), so the write is in bounds
        // and aligned. The caller switches to the `SPILLED` table next.
        unsafe { data.as_mut_ptr().cast::<Spilled<T>>().write(spilled) };
    }

    // SAFETY (every `spilled_*` function): the storage holds a `Spilled<T>`,
    // since only the `SPILLED` table names these functions.

    unsafe fn spilled_task(data: &Storage) -> &dyn ErasedTask {
        // SAFETY: see above.
        &*unsafe { Self::held::<Spilled<T>>(data) }.task
    }

    unsafe fn spilled_run_cloned(data: &Storage) -> Run {
        // SAFETY: see above.
        let spilled = unsafe { Self::held::<Spilled<T>>(data) };
        Task::run((*spilled.task).clone())
    }

    unsafe fn spilled_run(data: &Storage) -> Run {
        // SAFETY: see above; the caller never uses the storage again.
        let spilled = unsafe { Self::take::<Spilled<T>>(data) };
        Task::run(*spilled.task)
    }

    unsafe fn spilled_clone(data: &Storage) -> Stored {
        // SAFETY: see above.
        let spilled = unsafe { Self::held::<Spilled<T>>(data) };
        let clone = Spilled {
            route: spilled.route.clone(),
            task: spilled.task.clone(),
        };
        // SAFETY: `SPILLED` is made for `Spilled<T>`.
        unsafe { Stored::hold(clone, Self::SPILLED) }
    }
}

impl Stored {
    /// Stores `task` with the plain route: in place if it fits, else
    /// spilled.
    #[inline]
    pub(crate) fn new<T: Task>(task: T) -> Self {
        if fits::<T>() {
            // SAFETY: `FRESH` is made for `T`.
            unsafe { Self::hold(task, Table::<T>::FRESH) }
        } else {
            let spilled = Spilled {
                route: Route::lean(false),
                task: Box::new(task),
            };
            // SAFETY: `SPILLED` is made for `Spilled<T>`.
            unsafe { Self::hold(spilled, Table::<T>::SPILLED) }
        }
    }

    /// Stores `held` with `table`.
    ///
    /// # Safety
    ///
    /// `table` is made for `H` (see the module's invariant).
    #[inline(always)]
    unsafe fn hold<H>(held: H, table: &'static VTable) -> Self {
        // Decided at compile time: `new` and the tables only pass values
        // that fit.
        assert!(fits::<H>(), "airlock: a stored value does not fit");
        let mut data = Storage::uninit();
        // SAFETY: `H` fits the storage's size and alignment (asserted
        // above), so the write is in bounds and aligned; `data` then holds
        // an initialised `H`, paired with a table made for `H` (the
        // caller's contract): the module's invariant holds from here.
        unsafe { data.as_mut_ptr().cast::<H>().write(held) };
        Stored {
            table,
            data,
            _held: PhantomData,
        }
    }

    /// The task's name, read without a call.
    #[inline(always)]
    pub(crate) fn name(&self) -> &'static str {
        self.table.name
    }

    /// The task, type-erased.
    #[inline]
    pub(crate) fn task(&self) -> &dyn ErasedTask {
        // SAFETY: the module's invariant.
        unsafe { (self.table.task)(&self.data) }
    }

    /// Runs a clone of the task, keeping this one.
    #[inline]
    pub(crate) fn run_cloned(&self) -> Run {
        // SAFETY: the module's invariant.
        unsafe { (self.table.run_cloned)(&self.data) }
    }

    /// Runs the task, consuming it (and dropping the route).
    pub(crate) fn run(self) -> Run {
        // The value is moved out below: it must not be dropped here too,
        // even if the task's run panics.
        let this = ManuallyDrop::new(self);
        // SAFETY: the module's invariant; the storage is never used or
        // dropped afterwards (`ManuallyDrop`).
        unsafe { (this.table.run)(&this.data) }
    }

    /// The route, unless it is the plain one (then see
    /// [`is_captured`](Self::is_captured)).
    #[inline(always)]
    pub(crate) fn route(&self) -> Option<&Route> {
        if self.table.spill.is_some() {
            return None;
        }
        // SAFETY: a `SPILLED` table's storage holds a `Spilled<T>`, whose
        // route lies first (`repr(C)`) whatever `T` is; the reference lives
        // no longer than `self`.
        Some(unsafe { &*self.data.as_ptr().cast::<Route>() })
    }

    /// The route, to change: an intent whose task is held in place spills
    /// first, keeping its captured flag.
    #[inline]
    pub(crate) fn route_mut(&mut self) -> &mut Route {
        let captured = self.table.fresh.is_some();
        self.spill(None, captured);
        self.spilled_route_mut()
            .expect("airlock: an intent spilled above holds no route")
    }

    /// The route, to change, if it is stored (spilled).
    #[inline(always)]
    pub(crate) fn spilled_route_mut(&mut self) -> Option<&mut Route> {
        if self.table.spill.is_some() {
            return None;
        }
        // SAFETY: a `SPILLED` table's storage holds a `Spilled<T>`, whose
        // route lies first (`repr(C)`) whatever `T` is; the borrow lives no
        // longer than `self`'s.
        Some(unsafe { &mut *self.data.as_mut_ptr().cast::<Route>() })
    }

    /// Spills a task held in place, with a lean route: the local chain
    /// `local`, and `captured`. Nothing for a spilled one.
    #[inline]
    pub(crate) fn spill(&mut self, local: Option<PolicyChain>, captured: bool) {
        if let Some((spill, spilled)) = self.table.spill {
            // SAFETY: only the in-place tables have `spill`, so the storage
            // holds their task; it holds a `Spilled` one afterwards, and the
            // table is switched to match before anything else reads it.
            unsafe { spill(&mut self.data, local, captured) };
            self.table = spilled;
        }
    }

    /// Marks it captured from a nested scope.
    #[inline]
    pub(crate) fn set_captured(&mut self) {
        if let Some(captured) = self.table.captured {
            // Fresh, held in place: the same value, under its captured table.
            self.table = captured;
        } else if let Some(route) = self.spilled_route_mut() {
            route.set_captured();
        }
    }

    /// Clears the captured flag of an intent with the plain route.
    #[inline]
    pub(crate) fn set_fresh(&mut self) {
        if let Some(fresh) = self.table.fresh {
            self.table = fresh();
        }
    }

    /// Whether it holds the plain route, not captured: what a fresh intent
    /// has. One comparison.
    #[inline(always)]
    pub(crate) fn is_fresh(&self) -> bool {
        self.table.captured.is_some()
    }

    /// Whether it was captured from a nested scope.
    #[inline]
    pub(crate) fn is_captured(&self) -> bool {
        match self.route() {
            Some(route) => route.is_captured(),
            None => self.table.fresh.is_some(),
        }
    }
}

impl Drop for Stored {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the module's invariant; a value being dropped is never
        // used again.
        unsafe { (self.table.drop)(&mut self.data) }
    }
}

impl Clone for Stored {
    fn clone(&self) -> Self {
        // SAFETY: the module's invariant.
        let mut clone = unsafe { (self.table.clone)(&self.data) };
        // Held the same way (an in-place clone is made fresh): the same
        // table, captured flag included.
        clone.table = self.table;
        clone
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::policy::{AllowAll, PolicyChain};

    /// Shared by a tracked task and its copies: how many are alive, which
    /// ran, and whether the next run panics.
    #[derive(Debug, Default)]
    struct Counts {
        live: AtomicUsize,
        runs: Mutex<Vec<u64>>,
        panic_on_run: AtomicBool,
    }

    #[derive(Debug, Default, Clone)]
    struct Probe(Arc<Counts>);

    impl Probe {
        fn live(&self) -> usize {
            self.0.live.load(Ordering::SeqCst)
        }

        fn runs(&self) -> Vec<u64> {
            self.0.runs.lock().unwrap().clone()
        }
    }

    /// A task of `WORDS + 3` words (an id, the filler and its tag, the probe)
    /// that counts its live copies, so a test can tell that each value is
    /// dropped exactly once whichever way it ends, and checks that it arrives
    /// whole.
    #[derive(Debug, Serialize, Deserialize)]
    struct Tracked<const WORDS: usize> {
        id: u64,
        #[serde(skip)]
        filler: Option<[u64; WORDS]>,
        #[serde(skip)]
        probe: Probe,
    }

    impl<const WORDS: usize> Tracked<WORDS> {
        fn new(id: u64, probe: &Probe) -> Self {
            probe.0.live.fetch_add(1, Ordering::SeqCst);
            Tracked {
                id,
                filler: Some([id; WORDS]),
                probe: probe.clone(),
            }
        }
    }

    impl<const WORDS: usize> Clone for Tracked<WORDS> {
        fn clone(&self) -> Self {
            Tracked::new(self.id, &self.probe)
        }
    }

    impl<const WORDS: usize> Drop for Tracked<WORDS> {
        fn drop(&mut self) {
            self.probe.0.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl<const WORDS: usize> Task for Tracked<WORDS> {
        const NAME: &'static str = "tracked";

        fn run(self) -> Run {
            assert_eq!(self.filler, Some([self.id; WORDS]), "arrived whole");
            self.probe.0.runs.lock().unwrap().push(self.id);
            assert!(
                !self.probe.0.panic_on_run.load(Ordering::SeqCst),
                "the run panicked"
            );
            Run::ok()
        }
    }

    /// Held in place (four words) and spilled (seven).
    type Small = Tracked<1>;
    type Large = Tracked<4>;
    const _: () = assert!(fits::<Small>() && !fits::<Large>());

    fn done(run: Run) -> bool {
        matches!(run, Run::Done(Ok(())))
    }

    fn chain() -> PolicyChain {
        PolicyChain::push(None, AllowAll)
    }

    /// Every way a stored task can end, for a task of `WORDS` filler words:
    /// each copy is dropped once.
    fn every_end<const WORDS: usize>(spilled_route: bool) {
        let probe = Probe::default();
        let make = |id| {
            let mut stored = Stored::new(Tracked::<WORDS>::new(id, &probe));
            if spilled_route {
                stored.spill(Some(chain()), false);
            }
            stored
        };
        let stored = make(1);
        assert_eq!(stored.name(), "tracked");
        let task = (stored.task() as &dyn std::any::Any)
            .downcast_ref::<Tracked<WORDS>>()
            .expect("the task it was made with");
        assert_eq!(task.id, 1);

        // A clone is a value of its own; moving moves the value.
        let clone = stored.clone();
        assert_eq!(probe.live(), 2);
        assert_eq!(clone.route().is_some(), stored.route().is_some());
        let mut moved = vec![stored, clone];
        assert_eq!(probe.live(), 2);

        // Run on a clone: the clone ends with its run, the task is kept.
        assert!(done(moved[0].run_cloned()));
        assert_eq!(probe.live(), 2);

        // Run by value: consumed, and dropped by its own run.
        assert!(done(moved.pop().unwrap().run()));
        assert_eq!(probe.live(), 1);

        // Dropped without running.
        drop(moved);
        assert_eq!(probe.live(), 0);
        assert_eq!(probe.runs(), [1, 1]);

        // A run that panics drops its value once, while unwinding.
        probe.0.panic_on_run.store(true, Ordering::SeqCst);
        let stored = make(2);
        assert!(catch_unwind(AssertUnwindSafe(|| stored.run())).is_err());
        assert_eq!(probe.live(), 0);
        let stored = make(3);
        assert!(catch_unwind(AssertUnwindSafe(|| stored.run_cloned())).is_err());
        assert_eq!(probe.live(), 1, "the stored task is kept");
        drop(stored);
        assert_eq!(probe.live(), 0);
    }

    #[test]
    fn a_small_task_held_in_place_ends_once_every_way() {
        every_end::<1>(false);
    }

    #[test]
    fn a_small_task_spilled_for_its_route_ends_once_every_way() {
        every_end::<1>(true);
    }

    #[test]
    fn a_large_task_spilled_ends_once_every_way() {
        every_end::<4>(false);
    }

    #[test]
    fn a_task_held_in_place_keeps_its_flag_through_clones_and_spills() {
        let probe = Probe::default();
        let mut stored = Stored::new(Small::new(7, &probe));
        assert!(stored.is_fresh() && !stored.is_captured() && stored.route().is_none());

        stored.set_captured();
        assert!(!stored.is_fresh() && stored.is_captured() && stored.route().is_none());
        let clone = stored.clone();
        assert!(clone.is_captured() && clone.route().is_none());
        stored.set_captured();
        assert!(stored.is_captured(), "capturing twice is capturing once");

        // Spilling for a route keeps the flag, and the task.
        let route = stored.route_mut();
        assert!(route.is_captured());
        assert!(stored.route().is_some() && stored.is_captured() && !stored.is_fresh());
        assert_eq!(probe.live(), 2);
        assert!(done(stored.run_cloned()));
        assert_eq!(probe.runs(), [7]);

        let mut fresh = clone.clone();
        fresh.set_fresh();
        assert!(fresh.is_fresh() && !fresh.is_captured());
        assert!(clone.is_captured(), "a clone's flag is its own");
        drop((stored, clone, fresh));
        assert_eq!(probe.live(), 0);
    }

    #[test]
    fn a_spilled_route_is_replaced_in_place() {
        let probe = Probe::default();
        let mut stored = Stored::new(Large::new(9, &probe));
        assert!(stored.route().is_some_and(|r| !r.is_captured()) && !stored.is_fresh());
        stored.set_captured();
        assert!(stored.is_captured());
        *stored.route_mut() = Route::lean(false);
        assert!(!stored.is_captured());
        stored.set_fresh();
        assert!(stored.route().is_some(), "a spilled task stays spilled");
        assert!(done(stored.run()));
        assert_eq!((probe.live(), probe.runs()), (0, vec![9]));
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Unit;

    impl Task for Unit {
        const NAME: &'static str = "unit";
        fn run(self) -> Run {
            Run::ok()
        }
    }

    /// Over-aligned: spilled whatever its size.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Wide(u128);

    impl Task for Wide {
        const NAME: &'static str = "wide";
        fn run(self) -> Run {
            assert_eq!(self.0, u128::MAX - 1);
            Run::ok()
        }
    }

    #[test]
    fn zero_sized_and_over_aligned_tasks_keep_their_values() {
        const { assert!(fits::<Unit>() && !fits::<Wide>()) };
        let mut unit = Stored::new(Unit);
        assert!(unit.is_fresh());
        assert!(done(unit.clone().run()));
        unit.route_mut();
        assert!(done(unit.run()));
        let wide = Stored::new(Wide(u128::MAX - 1));
        assert!(wide.route().is_some());
        let copies: Vec<Stored> = (0..3).map(|_| wide.clone()).collect();
        for copy in copies {
            assert!(done(copy.run()));
        }
        assert!(done(wide.run_cloned()));
    }

    /// Interior mutability in a task held in place, used through the
    /// shared reference `Intent::payload` gives out.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Counting {
        #[serde(skip)]
        hits: AtomicUsize,
    }

    impl Clone for Counting {
        fn clone(&self) -> Self {
            Counting {
                hits: AtomicUsize::new(self.hits.load(Ordering::SeqCst)),
            }
        }
    }

    impl Task for Counting {
        const NAME: &'static str = "counting";
        fn run(self) -> Run {
            assert_eq!(self.hits.into_inner(), 3, "the run sees what was counted");
            Run::ok()
        }
    }

    #[test]
    fn a_task_held_in_place_may_change_itself_through_a_shared_reference() {
        const { assert!(fits::<Counting>()) };
        let stored = Stored::new(Counting::default());
        let shared = &stored;
        std::thread::scope(|threads| {
            for _ in 0..3 {
                threads.spawn(|| {
                    let task = (shared.task() as &dyn std::any::Any)
                        .downcast_ref::<Counting>()
                        .unwrap();
                    task.hits.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert!(done(stored.run_cloned()));
        assert!(done(stored.run()));
    }

    /// A borrowed `Cow` points into static memory, an owned one into the
    /// heap: both survive moves of the storage and a trip to another thread.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Label(u64, Cow<'static, str>);

    impl Task for Label {
        const NAME: &'static str = "label";
        fn run(self) -> Run {
            assert_eq!(self.1, format!("label-{}", self.0));
            Run::ok()
        }
    }

    #[test]
    fn pointers_in_a_task_held_in_place_survive_moves_and_threads() {
        const { assert!(fits::<Label>()) };
        let mut all: Vec<Stored> = vec![Stored::new(Label(0, Cow::Borrowed("label-0")))];
        for n in 1..100 {
            // Growing the vector moves every task held so far.
            let mut stored = Stored::new(Label(n, Cow::Owned(format!("label-{n}"))));
            if n % 3 == 0 {
                stored.route_mut();
            }
            all.push(stored);
        }
        let all = std::thread::spawn(move || {
            for stored in &all {
                assert!(done(stored.run_cloned()));
            }
            all
        })
        .join()
        .unwrap();
        for stored in all {
            assert!(done(stored.run()));
        }
    }
}
