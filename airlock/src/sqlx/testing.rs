//! Commit-faithful test support: what a transaction scope would dispatch at
//! COMMIT, inside a test transaction that is rolled back.

use std::future::Future;

use super::tx::{InTransaction, Parked, TxKind, take_parked};
use crate::intent::Intent;
use crate::scope::Scope;
use crate::task::Task;

/// Runs `future` as if it were the body of an outermost airlock transaction
/// that commits, and returns what that COMMIT would dispatch, without a
/// COMMIT and without dispatching: Django's `captureOnCommitCallbacks`.
///
/// Inside it, [`transaction`](super::transaction) on a connection that is in
/// a transaction (the test's own, `&mut *test_tx`) opens a SAVEPOINT, as it
/// would inside a real transaction scope: what a released savepoint enqueued
/// is captured, what a rolled-back one enqueued is not, and every policy
/// judges as it would at COMMIT. Roll the test transaction back afterwards.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), airlock::sqlx::TxError> {
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// # struct SendReceipt { order_id: i64 }
/// # impl Task for SendReceipt { const NAME: &'static str = "doc_capture_receipt"; fn run(self) -> Run { panic!("not in a test") } }
/// // The code under test: it opens its own transaction scope.
/// async fn checkout(conn: &mut sqlx::SqliteConnection) -> Result<(), airlock::sqlx::TxError> {
///     airlock::sqlx::transaction(conn, |_tx| Box::pin(async move {
///         airlock::enqueue(SendReceipt { order_id: 7 })?;
///         Ok(())
///     }))
///     .await
/// }
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let mut test_tx = pool.begin().await?;
/// let (result, committed) = airlock::sqlx::capture_commit(checkout(&mut test_tx)).await;
/// result?;
/// assert_eq!(committed.payloads::<SendReceipt>(), [&SendReceipt { order_id: 7 }]);
/// test_tx.rollback().await?; // nothing was committed, nothing was sent
/// # Ok(())
/// # }
/// ```
pub async fn capture_commit<F: Future>(future: F) -> (F::Output, Committed) {
    let parked = Parked::default();
    let out = Scope::new()
        .kind(TxKind::outermost(parked.clone()))
        .run_async(InTransaction::new(async {
            Ok::<_, crate::Error>(future.await)
        }))
        .await;
    let mut intents = Vec::new();
    for batch in take_parked(&parked) {
        intents.extend(batch.intents().iter().cloned());
        let _ = batch.discard();
    }
    let out = match out {
        Ok(out) => out,
        // The scope keeps its own intents and parks them: its flush has
        // nothing that can fail.
        Err(error) => unreachable!("airlock: a capture_commit flush failed: {error}"),
    };
    (out, Committed { intents })
}

/// What a transaction scope would dispatch at COMMIT, in order: see
/// [`capture_commit`].
#[derive(Clone, Debug, Default)]
pub struct Committed {
    intents: Vec<Intent>,
}

impl Committed {
    /// The intents, in the order they would be dispatched.
    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    /// Takes the intents, to dispatch them by hand.
    pub fn into_intents(self) -> Vec<Intent> {
        self.intents
    }

    /// The payloads of task `T`, in order.
    pub fn payloads<T: Task>(&self) -> Vec<&T> {
        self.intents.iter().filter_map(Intent::payload).collect()
    }

    /// The task names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.intents.iter().map(Intent::name).collect()
    }

    /// How many intents.
    pub fn len(&self) -> usize {
        self.intents.len()
    }

    /// Whether nothing would be dispatched.
    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }
}
