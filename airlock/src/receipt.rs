//! Receipts: what a queue executor says about each intent it handed to its
//! engine, so a flush report can name the engine's job ids.
//!
//! An [`Executor`](crate::Executor) returns only success or a
//! [`DispatchFailure`](crate::DispatchFailure); a queue executor also knows,
//! per intent, the id the engine gave the job. It calls [`record_receipts`]
//! from inside its dispatch (synchronously, or in the last poll of its
//! pending future, after the engine confirmed), and the flush that ran the
//! dispatch lists them in its [`FlushReport`](crate::FlushReport)
//! ([`receipts`](crate::FlushReport::receipts)), also when the dispatch fails
//! part-way (the report inside the error then lists the confirmed ones).
//! Executors that do not record receipts leave the list empty.

use std::cell::RefCell;

/// One intent that an executor handed to its engine, with the engine's job id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The task's stable name.
    pub task: &'static str,
    /// The engine's queue (or job kind) it went to.
    pub queue: String,
    /// The engine's id for the job.
    pub job_id: String,
}

thread_local! {
    static RECEIPTS: RefCell<Vec<Receipt>> = const { RefCell::new(Vec::new()) };
}

/// Records receipts for the flush whose dispatch is running on this thread:
/// call it from [`Executor::dispatch`](crate::Executor::dispatch) or from the
/// poll of its future that completes it (nothing to do with receipts may
/// happen after an `.await`'s suspension on another thread).
pub fn record_receipts(receipts: impl IntoIterator<Item = Receipt>) {
    // A thread being torn down has no flush to report to.
    let _ = RECEIPTS.try_with(|slot| slot.borrow_mut().extend(receipts));
}

/// Forgets receipts left over by a dispatch that ran outside a flush.
pub(crate) fn clear() {
    let _ = RECEIPTS.try_with(|slot| slot.borrow_mut().clear());
}

/// Takes the receipts recorded on this thread since the last [`clear`].
pub(crate) fn take() -> Vec<Receipt> {
    RECEIPTS
        .try_with(|slot| std::mem::take(&mut *slot.borrow_mut()))
        .unwrap_or_default()
}
