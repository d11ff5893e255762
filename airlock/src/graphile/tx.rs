//! Jobs added through a transaction scope's own transaction.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::{PgConnection, Postgres};

use super::GraphileExecutor;
use crate::Intent;
use crate::sqlx::TxScope;
use crate::sqlx::tx::TxJobs;

impl TxJobs<Postgres> for GraphileExecutor {
    fn add<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        intents: &'a [Intent],
    ) -> Pin<Box<dyn Future<Output = Result<(), crate::BoxError>> + Send + 'a>> {
        Box::pin(async move {
            self.send_on(conn, intents)
                .await
                .map(drop)
                .map_err(Into::into)
        })
    }
}

impl TxScope<Postgres> {
    /// Adds the transaction's intents as graphile_worker jobs through the
    /// transaction itself, just before COMMIT, in one statement (as
    /// [`GraphileExecutor`] maps them): the jobs commit or roll back with
    /// the data, so no outbox is needed and nothing is dispatched after
    /// COMMIT. Replaces outbox mode; the executor set with
    /// [`executor`](TxScope::executor) is then not used. graphile's schema
    /// must live in the transaction's database.
    ///
    /// If adding the jobs fails the transaction rolls back and the error is
    /// [`TxError::Jobs`](crate::sqlx::TxError::Jobs). Features `graphile` and
    /// `sqlx-postgres`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::PgPool) -> Result<(), airlock::sqlx::TxError> {
    /// use airlock::graphile::GraphileExecutor;
    /// use airlock::sqlx::TxScope;
    ///
    /// let checkout = TxScope::new().graphile(GraphileExecutor::new(pool.clone()));
    /// checkout
    ///     .run(&pool, |tx| Box::pin(async move {
    ///         sqlx::query("INSERT INTO orders DEFAULT VALUES").execute(&mut **tx).await?;
    ///         // airlock::enqueue(SendReceipt { .. })?; // a job iff this commits
    ///         Ok::<_, airlock::sqlx::TxError>(())
    ///     }))
    ///     .await
    /// # }
    /// ```
    pub fn graphile(self, executor: GraphileExecutor) -> Self {
        self.jobs_in_transaction(Arc::new(executor))
    }
}
