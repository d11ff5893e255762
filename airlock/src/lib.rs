//! Express side effects anywhere; control whether and when they escape.
//!
//! Domain code knows which side effects belong to an operation ("processing an
//! order notifies the warehouse"), but not whether this is the moment to
//! perform them: the transaction may still roll back, the caller may be a
//! migration that must not email anyone, or a test that wants to look at the
//! effects instead. airlock lets the code *state* the effect where it belongs
//! and lets the context decide:
//!
//! - [`enqueue`] buffers a typed *intent* in the current [`Scope`];
//! - the scope (WHEN) flushes on success and discards on failure;
//! - a [`Policy`] (WHAT) decides which intents may escape;
//! - an [`Executor`] (HOW) runs what escapes: a plain call, a tokio task, a job
//!   queue.
//!
//! ```
//! use airlock::{AssertNoEffects, BlockTasks, DropAll, Run, Scope, Task};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct SendConfirmationEmail {
//!     order_id: u64,
//! }
//!
//! impl Task for SendConfirmationEmail {
//!     const NAME: &'static str = "send_confirmation_email";
//!     fn run(self) -> Run {
//!         println!("emailing about order {}", self.order_id);
//!         Run::ok()
//!     }
//! }
//!
//! fn process(order_id: u64) -> airlock::Result<()> {
//!     // ... update the order ...
//!     airlock::enqueue(SendConfirmationEmail { order_id })
//! }
//!
//! // An endpoint: the email goes out when the closure returns Ok.
//! airlock::scope(|| process(7))?;
//! // A migration: nothing escapes.
//! Scope::new().policy(DropAll).run(|| process(7))?;
//! // A test: any enqueue is an error naming the task.
//! assert!(Scope::new().policy(AssertNoEffects).run(|| process(7)).is_err());
//! // A test: look at what would have escaped.
//! let (_, intents) = airlock::capture(|| process(7));
//! assert_eq!(intents[0].payload(), Some(&SendConfirmationEmail { order_id: 7 }));
//! // An admin endpoint: everything but the email.
//! Scope::new().policy(BlockTasks::of::<SendConfirmationEmail>()).run(|| process(7))?;
//! # Ok::<(), airlock::Error>(())
//! ```
//!
//! With the `macros` feature (on by default), `#[airlock::task]` writes the
//! [`Task`] struct from a function, and `#[airlock::scoped]` runs a function
//! in a scope.
//!
//! # The rules
//!
//! - No scope, no effect: [`enqueue`] outside a scope is [`Error::NoScope`].
//! - Effects escape only at flush, in the order they were enqueued.
//! - A nested scope's intents are captured by the enclosing scope by default;
//!   the outermost scope decides ([`ScopeKind::before_descendant_flushes`]).
//! - Every policy on the path counts: an enclosing scope's policy sees every
//!   enqueue inside it, and a nested scope's policy still judges its intents
//!   after they are captured.
//! - Each thread and each async task has its own current scope; spawned work
//!   reaches a scope only through an explicit [`handle`].
//! - If the executor fails, the intents not dispatched are handed back in the
//!   error ([`Error::into_undispatched`]).
//!
//! # What becomes of an intent
//!
//! Every intent that [`enqueue`] accepted ends in exactly one of these ways,
//! and nothing is lost without a trace:
//!
//! | fate | where it shows |
//! | --- | --- |
//! | dispatched | [`FlushReport::dispatched_count`] (and, for imperative flushes, [`FlushReport::dispatched`]) |
//! | dropped by a policy at flush | [`FlushReport::dropped`] names the task and the policy |
//! | discarded with its scope (`Err`, a panic, cancellation) | a `scope discarded` `tracing` event with the count |
//! | handed back to a caller | [`Error::into_undispatched`]: a failed flush's undispatched intents, the failed one first; an enqueue refused by no scope, a hook, a policy or an ended handle |
//! | no caller can take it | the [undelivered hook](Undelivered) |
//!
//! The undelivered hook ([`Defaults::on_undelivered`]) receives the intents
//! of a dispatch cancelled half way (the one running included), a task or
//! executor that panicked mid-batch (for a custom executor, what remained in
//! its [`Intents`]), a deferred [`Batch`] dropped unused, a scope that
//! flushed after its body failed or panicked and whose flush failed, and
//! what integrations lose after their caller is gone. The default hook logs
//! each intent at `ERROR` with its task name and JSON payload, so it can be
//! replayed. A task that panics under the inline executor is a failed task:
//! its flush returns the error, it does not unwind.
//!
//! # Features
//!
//! - `macros` (default): `#[airlock::task]` and `#[airlock::scoped]`.
//! - `tokio`: `TokioExecutor`, which runs escaping intents as tokio tasks and
//!   drains them at shutdown. With it, a synchronous scope that must wait for
//!   an async task inside a tokio runtime uses `block_in_place` on a
//!   multi-thread runtime, and fails the flush (handing the task back) on a
//!   current-thread one, where waiting would hang (see [`Run::wait`]).
//! - `apalis-redis`: [`apalis`], an executor and a worker for apalis on Redis.
//! - `graphile`: [`graphile`], an executor and a worker for graphile_worker on
//!   Postgres.
//! - `tower`: [`tower::AirlockLayer`], one scope per HTTP request for axum
//!   and any tower service.
//! - `axum`: `#[airlock::scoped]` on axum handlers judges the response by its
//!   status ([`axum::HttpOutcome`]).
//! - `sqlx-postgres`, `sqlx-sqlite`: [`sqlx`](mod@crate::sqlx), a database
//!   transaction as a scope (effects only after COMMIT) and a durable outbox
//!   with its relay.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "apalis-redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "apalis-redis")))]
pub mod apalis;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod block_on;
mod buffer;
mod call_display;
mod config;
mod context;
mod dry_run;
mod error;
pub mod executor;
mod finite;
mod future;
#[cfg(feature = "graphile")]
#[cfg_attr(docsrs, doc(cfg(feature = "graphile")))]
pub mod graphile;
mod handle;
mod intent;
#[cfg(any(feature = "apalis-redis", feature = "graphile"))]
mod job;
mod kind;
pub mod policy;
pub mod portable;
mod receipt;
pub mod registry;
mod report;
mod scope;
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlx-postgres", feature = "sqlx-sqlite")))
)]
pub mod sqlx;
#[allow(unsafe_code)] // The one exception: see the module's documentation.
mod stored;
mod task;
#[cfg(feature = "tokio")]
mod tokio_executor;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
mod undelivered;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::config::{
    Defaults, configure, defaults, reset_defaults, with_defaults, with_defaults_async,
};
pub use crate::dry_run::DryRun;
pub use crate::error::{DispatchError, Error, Result, StateError, StateErrorKind};
#[cfg(feature = "tokio")]
pub use crate::executor::TokioExecutor;
pub use crate::executor::{Dispatch, DispatchFailure, Executor, InlineExecutor, Intents};
pub use crate::future::{CaptureFuture, PolicyFuture, ScopeFuture, WithDefaults};
pub use crate::handle::{HandleFuture, ScopeHandle, handle};
pub use crate::intent::Intent;
pub use crate::kind::{Batch, Descendant, Exit, Independent, Release, ScopeKind};
pub use crate::policy::{
    AllowAll, AssertNoEffects, BlockTasks, DropAll, LogOnFlush, Policy, Violation,
};
pub use crate::portable::{PortablePolicy, portable_policy_of};
pub use crate::receipt::{Receipt, record_receipts};
pub use crate::registry::{Registration, RegistryError};
pub use crate::report::{Entries, Fate, FlushReport, ReportEntry};
pub use crate::scope::{
    ActiveScope, Outcome, Scope, buffered, capture, capture_async, capture_report, scope,
    scope_async, with_policy, with_policy_async,
};
pub use crate::task::{BoxError, BoxFuture, DispatchOptions, Run, Task, TaskOutput};
#[cfg(feature = "tokio")]
pub use crate::tokio_executor::{DrainReport, FailedTask};
pub use crate::undelivered::{Undelivered, undelivered};

#[cfg(feature = "macros")]
pub use airlock_macros::{scoped, task};

/// Buffers a side effect in the current scope.
///
/// Accepts any [`Task`] value, or an [`Intent`] built with options. Runs the
/// `on_enqueue` hook of the local policy regions and of every enclosing
/// scope's policy, innermost first; the intent escapes only when the scope
/// flushes.
///
/// # Errors
///
/// - [`Error::NoScope`] with no current scope: nothing runs.
/// - [`Error::PolicyViolation`] if a policy rejects it: it is not buffered.
/// - [`Error::EnqueueInHook`] from inside a policy or scope hook.
/// - [`Error::State`] through a [`handle`] whose scope has ended.
///
/// # Examples
///
/// ```
/// # use airlock::{DispatchOptions, Intent, Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
/// let error = airlock::enqueue(Ping).unwrap_err();
/// assert!(matches!(error, airlock::Error::NoScope { task: "ping", .. }));
///
/// airlock::scope(|| {
///     airlock::enqueue(Ping)?;
///     airlock::enqueue(Intent::new(Ping).with_options(DispatchOptions::new().queue("fast")))
/// })?;
/// # Ok::<(), airlock::Error>(())
/// ```
#[inline(always)]
pub fn enqueue(intent: impl Into<Intent>) -> Result<()> {
    // Reached first without the intent, so that a thread shutting down
    // hands it back. Nothing runs between the two accesses: the second
    // finds the thread-local alive.
    if context::CONTEXT.try_with(|_| ()).is_err() {
        return no_scope_at_teardown(intent.into());
    }
    context::with_context(move |cx| cx.enqueue(intent)).map_err(|error| *error)
}

/// The thread is shutting down: no scope can be current.
#[cold]
fn no_scope_at_teardown(intent: Intent) -> Result<()> {
    Err(Error::NoScope {
        task: intent.name(),
        intent: Box::new(intent),
    })
}
