//! What differs between PostgreSQL and SQLite: the SQL, kept behind one
//! sealed trait so the transaction scope and the relay are written once.

use std::future::Future;
use std::pin::Pin;

use ::sqlx::Pool;
use ::sqlx::migrate::MigrateError;

use super::outbox::{Failure, NewRow, OutboxRow, RowState};

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A database that airlock's transaction scope and outbox support:
/// `sqlx::Postgres` (feature `sqlx-postgres`) and `sqlx::Sqlite` (feature
/// `sqlx-sqlite`).
///
/// Sealed: the SQL it needs is airlock's business.
pub trait Backend: sealed::Sealed {}

impl<DB: sealed::Sealed> Backend for DB {}

pub(crate) mod sealed {
    use super::*;

    /// The backend's SQL. Every method is one statement, so one round trip.
    #[allow(unreachable_pub, private_interfaces)]
    pub trait Sealed: ::sqlx::Database + Sized {
        /// How an outermost transaction begins (`None`: sqlx's `BEGIN`).
        const BEGIN: Option<&'static str>;

        /// Something that wakes the relay when rows are committed elsewhere.
        type Listener: Send;

        fn migrate(pool: &Pool<Self>) -> BoxFut<'_, Result<(), MigrateError>>;

        /// Inserts every row in one statement (and, on PostgreSQL, notifies
        /// relays at COMMIT).
        fn insert<'a>(
            conn: &'a mut Self::Connection,
            rows: &'a [NewRow],
        ) -> BoxFut<'a, Result<(), ::sqlx::Error>>;

        /// Whether a claim holds row locks until the round's COMMIT, so the
        /// relay dispatches inside the claiming transaction (PostgreSQL).
        /// Otherwise the claim leases the rows (pushes `available_at` out)
        /// and commits at once, and the dispatch runs outside any
        /// transaction (SQLite, whose one write lock the tasks may need).
        const LOCKS_ROWS: bool;

        /// Returns up to `limit` rows that are due, locked (or leased for
        /// `lease_ms`).
        fn claim(
            conn: &mut Self::Connection,
            limit: i64,
            lease_ms: i64,
        ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>>;

        /// Marks `done` rows done, records each failure, and makes
        /// `released` rows (claimed, not attempted) due again.
        fn settle<'a>(
            conn: &'a mut Self::Connection,
            done: &'a [i64],
            failed: &'a [Failure],
            released: &'a [i64],
        ) -> BoxFut<'a, Result<(), ::sqlx::Error>>;

        /// Rows in `state`, oldest first, after id `after`.
        fn list(
            pool: &Pool<Self>,
            state: RowState,
            after: i64,
            limit: i64,
        ) -> BoxFut<'_, Result<Vec<OutboxRow>, ::sqlx::Error>>;

        /// How many rows are in `state`.
        fn count(pool: &Pool<Self>, state: RowState) -> BoxFut<'_, Result<i64, ::sqlx::Error>>;

        /// Makes dead rows pending again, with their attempts reset.
        fn replay<'a>(
            pool: &'a Pool<Self>,
            ids: Option<&'a [i64]>,
        ) -> BoxFut<'a, Result<u64, ::sqlx::Error>>;

        /// Deletes done rows older than `age_ms`.
        fn purge_done(pool: &Pool<Self>, age_ms: i64) -> BoxFut<'_, Result<u64, ::sqlx::Error>>;

        /// Subscribes to commit notifications, where the database has them.
        fn listen(pool: &Pool<Self>) -> BoxFut<'_, Option<Self::Listener>>;

        /// Resolves at the next notification.
        fn notified(listener: &mut Self::Listener) -> BoxFut<'_, Result<(), ::sqlx::Error>>;
    }
}

/// Creates (or updates) the `airlock_outbox` table, with the migrations
/// airlock ships. They are tracked in their own table,
/// `_airlock_migrations`, so your own `sqlx::migrate!()` is not disturbed.
/// Run it at start-up, before a [`Relay`](super::Relay) or an outbox-mode
/// [`TxScope`](super::TxScope) needs the table.
///
/// # Errors
///
/// sqlx's [`MigrateError`] if the database refuses a migration.
pub async fn migrate<DB: Backend>(pool: &Pool<DB>) -> Result<(), MigrateError> {
    DB::migrate(pool).await
}

/// The migrator shared by both backends: one migration each, in its own
/// bookkeeping table.
pub(crate) fn migrator(sql: &'static str) -> ::sqlx::migrate::Migrator {
    use ::sqlx::SqlSafeStr;
    use ::sqlx::migrate::{Migration, MigrationType, Migrator};
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "airlock outbox".into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )]);
    migrator.dangerous_set_table_name("_airlock_migrations");
    migrator
}
