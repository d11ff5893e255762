//! apalis on Redis (feature `apalis-redis`): an executor that pushes each
//! flush into apalis queues in one round trip per queue, and a worker that
//! runs the jobs as registered tasks, each inside its own scope.
//!
//! Every job is an [`Envelope`] `{task, payload, options}`, so one worker
//! consumes every task of a queue. A [`PortablePolicy`](crate::PortablePolicy)
//! on the enqueuing scope travels in the envelope and becomes the job
//! scope's policy on the worker.
//!
//! ```no_run
//! use airlock::apalis::{RedisExecutor, Worker};
//! # use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendEmail { order_id: u64 }
//! # impl Task for SendEmail { const NAME: &'static str = "send_email"; fn run(self) -> Run { Run::ok() } }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
//! let executor = RedisExecutor::new(conn.clone()).default_queue("shop");
//!
//! // The service: the email becomes a job when the scope succeeds.
//! let mut scope = airlock::Scope::new().executor(executor.clone()).enter()?;
//! airlock::enqueue(SendEmail { order_id: 7 })?;
//! scope.exit()?;
//! let report = scope.flush_async().await?;
//! println!("job id: {}", report.receipts()[0].job_id);
//!
//! // The worker (another process): runs it, and pushes what it enqueues.
//! Worker::new(conn).queue("shop").executor(executor).run().await?;
//! # Ok(()) }
//! ```

mod envelope;
mod executor;
mod worker;

pub use self::envelope::Envelope;
pub use self::executor::{DEFAULT_QUEUE, RedisExecutor};
pub use self::worker::{DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_JOB_BYTES, Worker};
pub use crate::job::Startup;
