//! graphile_worker on Postgres (feature `graphile`): an executor that adds
//! each flush as jobs in one statement, and a worker that runs them as
//! registered tasks, each inside its own scope.
//!
//! A job's identifier is the task's name and its payload the task's JSON, as
//! graphile's other producers and consumers (Node.js workers, SQL triggers,
//! the admin tools) expect.
//!
//! Inside a transaction scope (features `graphile` + `sqlx-postgres`),
//! [`TxScope::graphile`](crate::sqlx::TxScope::graphile) adds the
//! transaction's intents as jobs through the transaction itself, before
//! COMMIT: they commit or roll back with the data, so no outbox is needed.
//!
//! ```no_run
//! use airlock::graphile::{GraphileExecutor, Worker};
//! # use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendEmail { order_id: u64 }
//! # impl Task for SendEmail { const NAME: &'static str = "send_email"; fn run(self) -> Run { Run::ok() } }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?;
//! let executor = GraphileExecutor::new(pool.clone());
//!
//! // The service: the email becomes a job when the scope succeeds.
//! let mut scope = airlock::Scope::new().executor(executor.clone()).enter()?;
//! airlock::enqueue(SendEmail { order_id: 7 })?;
//! scope.exit()?;
//! let report = scope.flush_async().await?;
//! println!("job id: {}", report.receipts()[0].job_id);
//!
//! // The worker (another process): runs it, and adds what it enqueues.
//! Worker::new(pool).task::<SendEmail>().executor(executor).run().await?;
//! # Ok(()) }
//! ```

mod executor;
#[cfg(feature = "sqlx-postgres")]
mod tx;
mod worker;

pub use self::executor::{GraphileExecutor, POLICY_KEY};
pub use self::worker::{DEFAULT_MAX_PAYLOAD_BYTES, Job, Worker, WorkerError};
pub use crate::job::Startup;
