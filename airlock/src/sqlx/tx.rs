//! The transaction scope: begin, run the body in an airlock scope, write the
//! outbox, COMMIT, and only then dispatch.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use ::sqlx::{Connection, Pool, Transaction};
use pin_project_lite::pin_project;

use super::backend::Backend;
use super::outbox::{self, NewRow};
use crate::executor::Executor;
use crate::intent::Intent;
use crate::kind::{Batch, ScopeKind};
use crate::policy::Policy;
use crate::scope::Scope;
use crate::undelivered::{Undelivered, undelivered};

/// The future a transaction body returns: `Box::pin(async move { ... })`, as
/// with sqlx's `Connection::transaction`.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = T> + Send + 't>>;

/// Where a transaction starts: a pool (a new, outermost transaction) or a
/// connection (`&mut *conn`, `&mut *tx`), which is a savepoint when it is
/// already inside an airlock transaction.
pub enum Conn<'c, DB: Backend> {
    /// Take a connection from the pool and begin a transaction on it.
    Pool(&'c Pool<DB>),
    /// Begin on this connection: a transaction, or a savepoint if it is in
    /// one.
    Connection(&'c mut DB::Connection),
}

/// What a transaction can begin on: `&Pool`, `&mut PgConnection` /
/// `&mut SqliteConnection`, `&mut PoolConnection`, `&mut Transaction`.
pub trait IntoConn<'c> {
    /// The database.
    type Database: Backend;

    /// Where the transaction starts.
    fn into_conn(self) -> Conn<'c, Self::Database>;
}

impl<'c, DB: Backend> IntoConn<'c> for Conn<'c, DB> {
    type Database = DB;
    fn into_conn(self) -> Conn<'c, DB> {
        self
    }
}

impl<'c, DB: Backend> IntoConn<'c> for &'c Pool<DB> {
    type Database = DB;
    fn into_conn(self) -> Conn<'c, DB> {
        Conn::Pool(self)
    }
}

impl<'c, DB: Backend> IntoConn<'c> for &'c mut Transaction<'_, DB> {
    type Database = DB;
    fn into_conn(self) -> Conn<'c, DB> {
        Conn::Connection(&mut **self)
    }
}

impl<'c, DB: Backend> IntoConn<'c> for &'c mut ::sqlx::pool::PoolConnection<DB> {
    type Database = DB;
    fn into_conn(self) -> Conn<'c, DB> {
        Conn::Connection(&mut **self)
    }
}

#[cfg(feature = "sqlx-postgres")]
impl<'c> IntoConn<'c> for &'c mut ::sqlx::PgConnection {
    type Database = ::sqlx::Postgres;
    fn into_conn(self) -> Conn<'c, ::sqlx::Postgres> {
        Conn::Connection(self)
    }
}

#[cfg(feature = "sqlx-sqlite")]
impl<'c> IntoConn<'c> for &'c mut ::sqlx::SqliteConnection {
    type Database = ::sqlx::Sqlite;
    fn into_conn(self) -> Conn<'c, ::sqlx::Sqlite> {
        Conn::Connection(self)
    }
}

impl<DB: Backend> fmt::Debug for Conn<'_, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conn::Pool(_) => "Conn::Pool",
            Conn::Connection(_) => "Conn::Connection",
        })
    }
}

impl<'c, DB: Backend> Conn<'c, DB> {
    fn in_transaction(&self) -> bool {
        match self {
            Conn::Pool(_) => false,
            Conn::Connection(connection) => connection.is_in_transaction(),
        }
    }

    /// Begins an outermost transaction (`BEGIN IMMEDIATE` on SQLite).
    async fn begin(self) -> Result<Transaction<'c, DB>, ::sqlx::Error> {
        match (self, DB::BEGIN) {
            (Conn::Pool(pool), None) => pool.begin().await,
            (Conn::Pool(pool), Some(statement)) => pool.begin_with(statement).await,
            (Conn::Connection(connection), None) => connection.begin().await,
            (Conn::Connection(connection), Some(statement)) => {
                connection.begin_with(statement).await
            }
        }
    }
}

/// What can go wrong around a transaction scope. Each message says whether
/// the transaction committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// A database error: from the body's queries (so `?` works on them), or
    /// from BEGIN. The transaction did not commit.
    #[error("database error; the transaction did not commit")]
    Database(#[from] ::sqlx::Error),

    /// Writing the intents to the outbox failed; the transaction was rolled
    /// back and its intents discarded.
    #[error(
        "writing {count} intent(s) to the outbox failed, so the transaction was rolled back; \
         check that `airlock::sqlx::migrate` ran on this database"
    )]
    Outbox {
        /// How many intents were to be written.
        count: usize,
        /// The database's error.
        #[source]
        source: ::sqlx::Error,
    },

    /// Adding the intents as jobs through the transaction failed (a job
    /// queue in the same database, such as `TxScope::graphile`); the
    /// transaction was rolled
    /// back and its intents discarded.
    #[error(
        "adding {count} intent(s) as jobs in the transaction failed, so the transaction was \
         rolled back and its intents discarded"
    )]
    Jobs {
        /// How many intents were to be added.
        count: usize,
        /// The queue's error.
        #[source]
        source: crate::BoxError,
    },

    /// An intent's payload or options do not serialize to JSON, so it cannot
    /// go to the outbox; the transaction was rolled back.
    #[error(
        "cannot write `{task}` to the outbox: it does not serialize to JSON, so the transaction \
         was rolled back"
    )]
    Serialize {
        /// The task.
        task: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },

    /// The database refused the COMMIT: the transaction was rolled back and
    /// its intents discarded.
    #[error("COMMIT failed: the transaction was rolled back and its intents discarded")]
    Commit(#[source] ::sqlx::Error),

    /// The connection failed during COMMIT: the transaction may or may not
    /// have committed. In post-commit mode the intents are handed back
    /// ([`TxError::into_undispatched`]); in outbox mode they are in the
    /// outbox exactly when the transaction committed.
    #[error(
        "the connection failed during COMMIT: the transaction may or may not have committed. \
         Check the database before retrying; {} intent(s) were not dispatched and are handed \
         back by `TxError::into_undispatched()`",
        intents.len()
    )]
    CommitUnknown {
        /// The I/O or protocol error.
        #[source]
        source: ::sqlx::Error,
        /// The intents of the transaction, not dispatched.
        intents: Vec<Intent>,
    },

    /// The connection is in a transaction that no airlock transaction scope
    /// owns, so a savepoint there would dispatch before the real COMMIT.
    #[error(
        "the connection is already in a transaction that airlock does not own, so effects \
         enqueued here could escape before the real COMMIT. Begin the outer transaction with \
         `airlock::sqlx::transaction` or `airlock::sqlx::begin` and nest inside its closure \
         (or `guard.scope(...)`), or test with `airlock::sqlx::capture_commit`"
    )]
    NotOwned,

    /// An airlock error from the body (`enqueue` refused an intent, say).
    #[error(transparent)]
    Airlock(#[from] crate::Error),
}

impl TxError {
    /// The intents that were not dispatched, handed back (a COMMIT of
    /// unknown outcome). Empty for the other errors.
    pub fn into_undispatched(self) -> Vec<Intent> {
        match self {
            TxError::CommitUnknown { intents, .. } => intents,
            TxError::Airlock(error) => error.into_undispatched(),
            _ => Vec::new(),
        }
    }

    /// Whether the transaction may have committed after all.
    pub fn is_commit_unknown(&self) -> bool {
        matches!(self, TxError::CommitUnknown { .. })
    }
}

/// A COMMIT that failed this way may have taken effect: the connection
/// broke (I/O, protocol), or the server said it is dropping the connection
/// (SQLSTATE class 08, connection exception, or 57P, operator
/// intervention: terminated, shutting down, crashed) instead of answering.
fn ambiguous(error: &::sqlx::Error) -> bool {
    match error {
        ::sqlx::Error::Io(_)
        | ::sqlx::Error::Protocol(_)
        | ::sqlx::Error::Tls(_)
        | ::sqlx::Error::WorkerCrashed => true,
        ::sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// The body's error, or an airlock error from its scope's flush.
enum BodyError<E> {
    User(E),
    Airlock(crate::Error),
}

impl<E> From<crate::Error> for BodyError<E> {
    fn from(error: crate::Error) -> Self {
        BodyError::Airlock(error)
    }
}

impl<E: From<TxError>> BodyError<E> {
    fn into_user(self) -> E {
        match self {
            BodyError::User(error) => error,
            BodyError::Airlock(error) => TxError::Airlock(error).into(),
        }
    }
}

/// Batches parked by a transaction scope until its COMMIT.
pub(crate) type Parked = Arc<Mutex<Vec<Batch>>>;

pub(crate) fn take_parked(parked: &Parked) -> Vec<Batch> {
    std::mem::take(&mut *parked.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The scope kind of a transaction: the outermost keeps its own intents
/// (an enclosing scope cannot undo a COMMIT) and parks them until the COMMIT;
/// a savepoint is an ordinary nested scope, captured by its parent.
pub(crate) struct TxKind {
    parked: Option<Parked>,
}

impl TxKind {
    pub(crate) fn outermost(parked: Parked) -> Self {
        TxKind {
            parked: Some(parked),
        }
    }

    fn savepoint() -> Self {
        TxKind { parked: None }
    }
}

impl ScopeKind for TxKind {
    fn keeps_own_intents(&self) -> bool {
        self.parked.is_some()
    }

    fn schedule(&self, batch: Batch) -> Option<Batch> {
        match &self.parked {
            Some(parked) => {
                parked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(batch);
                None
            }
            None => Some(batch),
        }
    }
}

thread_local! {
    /// How many airlock transaction bodies are being polled on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

fn in_airlock_transaction() -> bool {
    DEPTH.with(Cell::get) > 0
}

pin_project! {
    /// Marks the thread as inside an airlock transaction while `future` is
    /// polled, so a nested `transaction` knows its savepoint is owned.
    pub(crate) struct InTransaction<F> {
        #[pin]
        future: F,
    }
}

impl<F> InTransaction<F> {
    pub(crate) fn new(future: F) -> Self {
        InTransaction { future }
    }
}

impl<F: Future> Future for InTransaction<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                DEPTH.with(|depth| depth.set(self.0));
            }
        }
        let _restore = Restore(DEPTH.with(|depth| depth.replace(depth.get() + 1)));
        self.project().future.poll(cx)
    }
}

/// Adds a transaction's intents as jobs of a queue that lives in the same
/// database, through the transaction, before its COMMIT (the jobs then
/// commit or roll back with the data). Implemented by `GraphileExecutor`.
pub(crate) trait TxJobs<DB: Backend>: Send + Sync {
    /// Adds every intent, in one statement; none on error.
    fn add<'a>(
        &'a self,
        conn: &'a mut DB::Connection,
        intents: &'a [Intent],
    ) -> Pin<Box<dyn Future<Output = Result<(), crate::BoxError>> + Send + 'a>>;
}

/// A transaction scope's settings: post-commit, outbox or job-queue mode,
/// and the airlock policy and executor of its scope.
///
/// # Examples
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), airlock::sqlx::TxError> {
/// use airlock::sqlx::TxScope;
///
/// // Outbox mode: the intents are written in the transaction; a Relay runs them.
/// let checkout = TxScope::new().outbox();
/// checkout
///     .run(&pool, |tx| Box::pin(async move {
///         sqlx::query("INSERT INTO orders DEFAULT VALUES").execute(&mut **tx).await?;
///         // airlock::enqueue(SendReceipt { .. })?;
///         Ok::<_, airlock::sqlx::TxError>(())
///     }))
///     .await
/// # }
/// ```
pub struct TxScope<DB: Backend> {
    scope: Scope,
    outbox: bool,
    jobs: Option<Arc<dyn TxJobs<DB>>>,
    fallback: Option<Pool<DB>>,
}

impl<DB: Backend> Clone for TxScope<DB> {
    fn clone(&self) -> Self {
        TxScope {
            scope: self.scope.clone(),
            outbox: self.outbox,
            jobs: self.jobs.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<DB: Backend> Default for TxScope<DB> {
    fn default() -> Self {
        TxScope::new()
    }
}

impl<DB: Backend> fmt::Debug for TxScope<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxScope")
            .field("scope", &self.scope)
            .field("outbox", &self.outbox)
            .field("jobs_in_transaction", &self.jobs.is_some())
            .field("fallback_outbox", &self.fallback.is_some())
            .finish()
    }
}

impl<DB: Backend> TxScope<DB> {
    /// Post-commit mode, with the default policy and executor: intents are
    /// dispatched right after COMMIT.
    pub fn new() -> Self {
        TxScope {
            scope: Scope::new(),
            outbox: false,
            jobs: None,
            fallback: None,
        }
    }

    /// Outbox mode: the intents are written to `airlock_outbox` in the
    /// transaction, before COMMIT, and a [`Relay`](super::Relay) dispatches
    /// them. The executor set here is then not used: the relay's is.
    pub fn outbox(mut self) -> Self {
        self.outbox = true;
        self.jobs = None;
        self
    }

    /// Job-queue mode: the intents are added as jobs through the
    /// transaction, before COMMIT, instead of being dispatched after it
    /// (replaces outbox mode).
    #[cfg_attr(
        not(all(feature = "graphile", feature = "sqlx-postgres")),
        allow(dead_code)
    )]
    pub(crate) fn jobs_in_transaction(mut self, jobs: Arc<dyn TxJobs<DB>>) -> Self {
        self.jobs = Some(jobs);
        self.outbox = false;
        self
    }

    /// Post-commit mode: intents the executor fails to dispatch after COMMIT
    /// are written to the outbox of `pool`, for a relay to retry, instead of
    /// going to the undelivered hook.
    pub fn fallback_outbox(mut self, pool: Pool<DB>) -> Self {
        self.fallback = Some(pool);
        self
    }

    /// The policy of the transaction's scope: which intents may escape.
    pub fn policy<P: Policy>(mut self, policy: P) -> Self {
        self.scope = self.scope.policy(policy);
        self
    }

    /// The executor that runs the intents after COMMIT (post-commit mode).
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.scope = self.scope.executor(executor);
        self
    }

    /// Runs `f` in a transaction and an airlock scope: COMMIT on `Ok`, then
    /// dispatch (or, in outbox mode, write then COMMIT); ROLLBACK and discard
    /// on `Err`, panic, or if the returned future is dropped.
    ///
    /// On a connection already inside an airlock transaction (`&mut *tx`,
    /// `&mut **tx`), `f` runs in a SAVEPOINT: released on `Ok`, its intents
    /// join the enclosing transaction's (whose mode, outbox or post-commit,
    /// then decides); rolled back on `Err`, they are discarded.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a [`TxError`] converted into `E`: BEGIN, the outbox
    /// write or the COMMIT failed ([`TxError::CommitUnknown`] when the
    /// outcome is unknown), or the connection is in a transaction airlock
    /// does not own ([`TxError::NotOwned`]). A dispatch failure after COMMIT
    /// is not an error of the transaction: those intents go to the
    /// undelivered hook (or the fallback outbox).
    // Not an `async fn`: the future is declared `Send` here, so callers that
    // spawn it need not prove it themselves, which trips over the lifetimes
    // of `IntoConn` (rust-lang/rust#110338).
    pub fn run<'c, C, R, E, F>(&self, conn: C, f: F) -> impl Future<Output = Result<R, E>> + Send
    where
        C: IntoConn<'c, Database = DB>,
        F: for<'t> FnOnce(&'t mut Transaction<'c, DB>) -> TxFuture<'t, Result<R, E>> + Send,
        R: Send,
        E: From<TxError> + Send,
    {
        self.run_conn(conn.into_conn(), f)
    }

    async fn run_conn<'c, R, E, F>(&self, conn: Conn<'c, DB>, f: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'c, DB>) -> TxFuture<'t, Result<R, E>> + Send,
        R: Send,
        E: From<TxError> + Send,
    {
        if conn.in_transaction() {
            let Conn::Connection(connection) = conn else {
                unreachable!("a pool is never in a transaction")
            };
            if !in_airlock_transaction() {
                return Err(TxError::NotOwned.into());
            }
            return self.savepoint(connection, f).await;
        }
        let mut tx = conn.begin().await.map_err(TxError::Database)?;
        let parked = Parked::default();
        let out = self
            .scope
            .clone()
            .kind(TxKind::outermost(parked.clone()))
            .run_async(InTransaction::new(async {
                f(&mut tx).await.map_err(BodyError::User)
            }))
            .await;
        match out {
            Ok(value) => {
                self.finish(tx, take_parked(&parked)).await?;
                Ok(value)
            }
            Err(error) => {
                rollback(tx).await;
                Err(error.into_user())
            }
        }
    }

    async fn savepoint<'c, R, E, F>(&self, connection: &'c mut DB::Connection, f: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'c, DB>) -> TxFuture<'t, Result<R, E>>,
        E: From<TxError>,
    {
        let mut savepoint = connection.begin().await.map_err(TxError::Database)?;
        self.scope
            .clone()
            .kind(TxKind::savepoint())
            .run_async(InTransaction::new(async move {
                match f(&mut savepoint).await {
                    // RELEASE inside the scope: its intents join the parent's
                    // only if the release succeeded.
                    Ok(value) => match savepoint.commit().await {
                        Ok(()) => Ok(value),
                        Err(error) => Err(BodyError::User(TxError::Database(error).into())),
                    },
                    Err(error) => {
                        rollback(savepoint).await;
                        Err(BodyError::User(error))
                    }
                }
            }))
            .await
            .map_err(BodyError::into_user)
    }

    /// Begins an outermost transaction and returns it as a guard, for code
    /// that cannot be one closure: run work with [`TxGuard::scope`], then
    /// [`commit`](TxGuard::commit). Dropped without `commit`, it rolls back
    /// and discards.
    ///
    /// # Errors
    ///
    /// [`TxError::Database`] if BEGIN fails; [`TxError::NotOwned`] if the
    /// connection is already in a transaction (nest with
    /// [`TxGuard::scope`] or [`transaction`] instead).
    pub fn begin<'c, C>(
        &self,
        conn: C,
    ) -> impl Future<Output = Result<TxGuard<'c, DB>, TxError>> + Send
    where
        C: IntoConn<'c, Database = DB>,
    {
        self.begin_conn(conn.into_conn())
    }

    async fn begin_conn<'c>(&self, conn: Conn<'c, DB>) -> Result<TxGuard<'c, DB>, TxError> {
        if conn.in_transaction() {
            return Err(TxError::NotOwned);
        }
        Ok(TxGuard {
            tx: Some(conn.begin().await?),
            parked: Parked::default(),
            settings: self.clone(),
        })
    }

    /// Writes the outbox (outbox mode) or adds the jobs (job-queue mode),
    /// commits, then dispatches (post-commit mode).
    async fn finish(
        &self,
        mut tx: Transaction<'_, DB>,
        batches: Vec<Batch>,
    ) -> Result<(), TxError> {
        let in_transaction = self.outbox || self.jobs.is_some();
        let mut held = Held {
            batches,
            committing: false,
            in_transaction,
        };
        let mut written = 0;
        if self.outbox {
            let intents = held.batches.iter().flat_map(Batch::intents);
            let written_rows = match outbox::rows(intents) {
                Ok(rows) => write::<DB>(&mut tx, &rows).await.map(|()| rows.len()),
                Err(error) => Err(error),
            };
            match written_rows {
                Ok(count) => written = count,
                Err(error) => {
                    rollback(tx).await;
                    return Err(error);
                }
            }
        } else if let Some(jobs) = &self.jobs {
            let intents: Vec<Intent> = held
                .batches
                .iter()
                .flat_map(|batch| batch.intents().iter().cloned())
                .collect();
            if !intents.is_empty()
                && let Err(source) = jobs.add(&mut tx, &intents).await
            {
                rollback(tx).await;
                return Err(TxError::Jobs {
                    count: intents.len(),
                    source,
                });
            }
        }
        held.committing = true;
        if let Err(error) = tx.commit().await {
            held.committing = false;
            if ambiguous(&error) {
                let intents = match in_transaction {
                    // In the outbox (or the job queue) exactly when the
                    // COMMIT took effect.
                    true => Vec::new(),
                    false => into_intents(held.take()),
                };
                return Err(TxError::CommitUnknown {
                    source: error,
                    intents,
                });
            }
            return Err(TxError::Commit(error));
        }
        if self.outbox {
            if written > 0 {
                super::relay::wake_local();
            }
            // Written and committed: the relay owns them now.
            return Ok(());
        }
        if in_transaction {
            // Committed as jobs: the queue's workers own them now.
            return Ok(());
        }
        self.dispatch_committed(held.take()).await;
        Ok(())
    }

    /// Dispatches committed intents; what fails goes to the fallback outbox,
    /// else to the undelivered hook.
    async fn dispatch_committed(&self, batches: Vec<Batch>) {
        let mut lost = Vec::new();
        let mut cause = String::new();
        for batch in batches {
            if !lost.is_empty() {
                lost.extend(into_intents(vec![batch]));
                continue;
            }
            if let Err(error) = batch.dispatch_async().await {
                cause = error_chain(&error);
                lost.extend(error.into_undispatched());
            }
        }
        if lost.is_empty() {
            return;
        }
        if let Some(pool) = &self.fallback {
            match write_fallback(pool, &lost).await {
                Ok(()) => {
                    tracing::warn!(
                        target: "airlock",
                        count = lost.len(),
                        error = %cause,
                        "dispatch after COMMIT failed: the intents were written to the outbox"
                    );
                    super::relay::wake_local();
                    return;
                }
                Err(error) => {
                    cause = format!("{cause}; writing them to the outbox failed: {error}")
                }
            }
        }
        undelivered(Undelivered::new(lost, "dispatch after COMMIT failed").with_error(cause));
    }
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

async fn write<DB: Backend>(conn: &mut DB::Connection, rows: &[NewRow]) -> Result<(), TxError> {
    if rows.is_empty() {
        return Ok(());
    }
    DB::insert(conn, rows)
        .await
        .map_err(|source| TxError::Outbox {
            count: rows.len(),
            source,
        })
}

async fn write_fallback<DB: Backend>(pool: &Pool<DB>, intents: &[Intent]) -> Result<(), TxError> {
    let rows = outbox::rows(intents.iter())?;
    let mut connection = pool.acquire().await?;
    write::<DB>(&mut connection, &rows).await
}

async fn rollback<DB: Backend>(tx: Transaction<'_, DB>) {
    if let Err(error) = tx.rollback().await {
        tracing::warn!(target: "airlock", %error, "ROLLBACK failed; the connection is closed instead");
    }
}

/// A transaction's batches between its body and their dispatch. Dropped on
/// the way (an error, or the caller's future cancelled), they go where the
/// transaction went: discarded with a rollback, to the undelivered hook if
/// the future was dropped during a post-commit mode COMMIT.
struct Held {
    batches: Vec<Batch>,
    committing: bool,
    /// Written through the transaction (outbox or job-queue mode).
    in_transaction: bool,
}

impl Held {
    fn take(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.batches)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let batches = self.take();
        if self.committing && !self.in_transaction && !batches.is_empty() {
            undelivered(Undelivered::new(
                into_intents(batches),
                "the transaction's future was dropped during COMMIT: it may or may not have \
                 committed, and its intents were not dispatched",
            ));
        } else {
            discard(batches);
        }
    }
}

fn discard(batches: Vec<Batch>) {
    for batch in batches {
        let _ = batch.discard();
    }
}

fn into_intents(batches: Vec<Batch>) -> Vec<Intent> {
    let mut intents = Vec::new();
    for batch in batches {
        intents.extend(batch.intents().iter().cloned());
        let _ = batch.discard();
    }
    intents
}

/// An outermost transaction in progress, from [`begin`] or
/// [`TxScope::begin`]: for code that cannot be one closure.
///
/// It dereferences to the connection, so queries run on `&mut *guard`.
/// Effects are enqueued inside [`scope`](TxGuard::scope) (a SAVEPOINT whose
/// intents join the transaction's) or with [`enqueue`](TxGuard::enqueue).
/// [`commit`](TxGuard::commit) commits and dispatches (or writes the outbox
/// first); dropping the guard without it rolls back and discards.
///
/// # Examples
///
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) -> Result<(), airlock::sqlx::TxError> {
/// let mut tx = airlock::sqlx::begin(&pool).await?;
/// sqlx::query("INSERT INTO orders DEFAULT VALUES").execute(&mut *tx).await?;
/// tx.scope(|tx| Box::pin(async move {
///     // domain code: queries on &mut **tx, airlock::enqueue(...)
///     Ok::<_, airlock::sqlx::TxError>(())
/// })).await?;
/// tx.commit().await?; // COMMIT, then the effects run
/// # Ok(()) }
/// ```
pub struct TxGuard<'c, DB: Backend> {
    tx: Option<Transaction<'c, DB>>,
    parked: Parked,
    settings: TxScope<DB>,
}

impl<'c, DB: Backend> TxGuard<'c, DB> {
    fn tx(&mut self) -> &mut Transaction<'c, DB> {
        self.tx
            .as_mut()
            .expect("airlock: a TxGuard's transaction is present until commit or rollback")
    }

    /// Runs `f` in a SAVEPOINT of this transaction and an airlock scope:
    /// released on `Ok`, its intents join the transaction's (they escape at
    /// [`commit`](TxGuard::commit)); rolled back on `Err`, they are
    /// discarded and the transaction goes on.
    ///
    /// # Errors
    ///
    /// `f`'s error, or a [`TxError`] from the SAVEPOINT or its release.
    pub fn scope<R, E, F>(&mut self, f: F) -> impl Future<Output = Result<R, E>> + Send
    where
        F: for<'t, 's> FnOnce(&'t mut Transaction<'s, DB>) -> TxFuture<'t, Result<R, E>> + Send,
        R: Send,
        E: From<TxError> + Send,
    {
        let parked = self.parked.clone();
        let settings = self.settings.clone();
        let connection: &mut DB::Connection = self.tx();
        async move {
            Scope::new()
                .kind(TxKind::outermost(parked))
                .run_async(InTransaction::new(async move {
                    settings
                        .savepoint(connection, f)
                        .await
                        .map_err(BodyError::User)
                }))
                .await
                .map_err(BodyError::into_user)
        }
    }

    /// Enqueues one intent into this transaction: it escapes at
    /// [`commit`](TxGuard::commit).
    ///
    /// # Errors
    ///
    /// As [`enqueue`](crate::enqueue): a policy may reject it.
    pub fn enqueue(&mut self, intent: impl Into<Intent>) -> crate::Result<()> {
        self.settings
            .scope
            .clone()
            .kind(TxKind::outermost(self.parked.clone()))
            .run(|| crate::enqueue(intent))
    }

    /// The intents that will escape at COMMIT, in order.
    pub fn intents(&self) -> Vec<Intent> {
        let parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        parked
            .iter()
            .flat_map(|batch| batch.intents().iter().cloned())
            .collect()
    }

    /// Commits; then dispatches the intents (post-commit mode), having
    /// written them to the outbox first (outbox mode).
    ///
    /// # Errors
    ///
    /// As [`TxScope::run`].
    pub fn commit(mut self) -> impl Future<Output = Result<(), TxError>> + Send + 'c {
        let tx = self.tx.take().expect("airlock: TxGuard committed twice");
        let batches = take_parked(&self.parked);
        let settings = self.settings.clone();
        async move { settings.finish(tx, batches).await }
    }

    /// Rolls back and discards the intents.
    ///
    /// # Errors
    ///
    /// The database's error; the connection is then closed rather than
    /// reused.
    pub fn rollback(mut self) -> impl Future<Output = Result<(), TxError>> + Send + 'c {
        discard(take_parked(&self.parked));
        let tx = self.tx.take().expect("airlock: TxGuard rolled back twice");
        async move { tx.rollback().await.map_err(TxError::Database) }
    }
}

impl<DB: Backend> Deref for TxGuard<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.tx
            .as_ref()
            .expect("airlock: a TxGuard's transaction is present until commit or rollback")
    }
}

impl<DB: Backend> DerefMut for TxGuard<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.tx()
    }
}

impl<DB: Backend> Drop for TxGuard<'_, DB> {
    fn drop(&mut self) {
        let batches = take_parked(&self.parked);
        if self.tx.is_some() {
            let count: usize = batches.iter().map(|b| b.intents().len()).sum();
            tracing::debug!(
                target: "airlock",
                discarded = count,
                "transaction guard dropped without commit: rolled back"
            );
        }
        discard(batches);
    }
}

impl<DB: Backend> fmt::Debug for TxGuard<'_, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxGuard")
            .field("open", &self.tx.is_some())
            .field("intents", &self.intents().len())
            .finish()
    }
}

/// Runs `f` in a transaction scope in post-commit mode: shorthand for
/// `TxScope::new().run(conn, f)`. See [`TxScope::run`].
///
/// # Errors
///
/// As [`TxScope::run`].
pub fn transaction<'c, DB, C, R, E, F>(conn: C, f: F) -> impl Future<Output = Result<R, E>> + Send
where
    DB: Backend,
    C: IntoConn<'c, Database = DB>,
    F: for<'t> FnOnce(&'t mut Transaction<'c, DB>) -> TxFuture<'t, Result<R, E>> + Send,
    R: Send,
    E: From<TxError> + Send,
{
    let conn = conn.into_conn();
    async move { TxScope::new().run_conn(conn, f).await }
}

/// Begins an outermost transaction guard in post-commit mode: shorthand for
/// `TxScope::new().begin(conn)`. See [`TxGuard`].
///
/// # Errors
///
/// As [`TxScope::begin`].
pub fn begin<'c, DB, C>(conn: C) -> impl Future<Output = Result<TxGuard<'c, DB>, TxError>> + Send
where
    DB: Backend,
    C: IntoConn<'c, Database = DB>,
{
    let conn = conn.into_conn();
    async move { TxScope::new().begin_conn(conn).await }
}
