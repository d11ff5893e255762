//! A database transaction as an airlock boundary, with a durable outbox:
//! effects escape only after COMMIT, never on rollback, and in outbox mode
//! they survive a crash between the COMMIT and their dispatch.
//!
//! sqlx has no after-commit hook, so airlock owns the commit:
//! [`transaction`] (the shape of sqlx's `Connection::transaction`) begins a
//! transaction, runs your closure in an airlock scope, commits on `Ok` and
//! only then dispatches what the closure enqueued. `Err`, a panic or a
//! dropped future roll back and discard.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), airlock::sqlx::TxError> {
//! use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)]
//! # struct SendReceipt { order_id: i64 }
//! # impl Task for SendReceipt {
//! #     const NAME: &'static str = "doc_send_receipt";
//! #     fn run(self) -> Run { Run::ok() }
//! # }
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)").execute(&pool).await?;
//!
//! airlock::sqlx::transaction(&pool, |tx| {
//!     Box::pin(async move {
//!         let id: i64 = sqlx::query_scalar("INSERT INTO orders DEFAULT VALUES RETURNING id")
//!             .fetch_one(&mut **tx)
//!             .await?;
//!         airlock::enqueue(SendReceipt { order_id: id })?; // runs after COMMIT
//!         Ok::<_, airlock::sqlx::TxError>(())
//!     })
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! - **Nesting.** [`transaction`] given a connection that is already in an
//!   airlock transaction (`&mut **tx`) opens a SAVEPOINT: released, its
//!   intents join the enclosing transaction's; rolled back, they are
//!   discarded and the enclosing transaction's survive. Plain airlock scopes
//!   inside a transaction are captured by it, so effects enqueued deep in
//!   domain code wait for the COMMIT.
//! - **Outbox mode** ([`TxScope::outbox`]): the intents are written to the
//!   `airlock_outbox` table (created by [`migrate`]) in the same transaction,
//!   in one statement whatever their number, and a [`Relay`] dispatches the
//!   committed rows through any [`Executor`](crate::Executor), at least once,
//!   with retries, backoff and a dead state ([`Outbox`]).
//! - **Post-commit mode** (the default): dispatch right after COMMIT; what
//!   fails to dispatch goes to the [undelivered hook](crate::undelivered), or
//!   into the outbox with [`TxScope::fallback_outbox`].
//! - **Tests**: [`capture_commit`] shows what a transaction scope would
//!   dispatch at COMMIT, inside a test transaction that is rolled back.
//!
//! SQLite transactions begin with `BEGIN IMMEDIATE`, so a writer takes the
//! write lock up front instead of failing with `SQLITE_BUSY` at its first
//! write.

mod backend;
mod outbox;
#[cfg(feature = "sqlx-postgres")]
mod postgres;
mod relay;
#[cfg(feature = "sqlx-sqlite")]
mod sqlite;
mod testing;
pub(crate) mod tx;

pub use self::backend::{Backend, migrate};
pub use self::outbox::{OUTBOX_ID, Outbox, OutboxRow, RowState, outbox_id};
pub use self::relay::{Relay, RelayHandle};
pub use self::testing::{Committed, capture_commit};
pub use self::tx::{Conn, IntoConn, TxError, TxFuture, TxGuard, TxScope, begin, transaction};
