//! Orders in a database transaction: the order insert and its effects share
//! one transaction (`airlock::sqlx`), so the confirmation email goes out only
//! after the order is committed, and never for an order that rolled back.
//!
//! ```text
//! cargo run --example orders_sqlx                # SQLite file in the temp dir
//! cargo run --example orders_sqlx -- --outbox    # effects through the outbox and its relay
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example orders_sqlx
//! ```

use std::time::Duration;

use airlock::InlineExecutor;
use airlock::sqlx::{Outbox, Relay, RowState, TxError, TxScope};
use sqlx::{PgPool, SqlitePool};

/// Emails the customer that the order went through.
#[airlock::task(name = "orders.send_confirmation_email")]
fn send_confirmation_email(order_id: i64, to: String) {
    println!("  dispatched: confirmation email for order {order_id} to {to}");
}

/// Tells the warehouse to ship the order.
#[airlock::task(name = "orders.notify_warehouse", queue = "warehouse")]
async fn notify_warehouse(order_id: i64, sku: String) {
    println!("  dispatched: warehouse ships {sku} for order {order_id}");
}

/// Why an order did not go through.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("payment declined: {0} cents is over the card's limit")]
    Declined(i64),
    #[error(transparent)]
    Tx(#[from] TxError),
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        OrderError::Tx(error.into())
    }
}

impl From<airlock::Error> for OrderError {
    fn from(error: airlock::Error) -> Self {
        OrderError::Tx(error.into())
    }
}

macro_rules! demo {
    ($pool:expr, $outbox:expr, $create:expr) => {{
        let pool = $pool;
        sqlx::query($create).execute(&pool).await?;
        airlock::sqlx::migrate(&pool).await?;
        let scope = if $outbox {
            TxScope::new().outbox()
        } else {
            TxScope::new()
        };
        let relay = $outbox.then(|| Relay::new(pool.clone(), InlineExecutor).spawn());
        for (email, sku, total) in [
            ("ada@example.com", "kettle", 2_500_i64),
            ("bob@example.com", "piano", 900_000),
        ] {
            println!("order of a {sku} for {email}:");
            let placed: Result<i64, OrderError> = scope
                .run(&pool, |tx| {
                    Box::pin(async move {
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO example_orders (email, sku, total_cents) \
                             VALUES ($1, $2, $3) RETURNING id",
                        )
                        .bind(email)
                        .bind(sku)
                        .bind(total)
                        .fetch_one(&mut **tx)
                        .await?;
                        airlock::enqueue(SendConfirmationEmail {
                            order_id: id,
                            to: email.into(),
                        })?;
                        airlock::enqueue(NotifyWarehouse {
                            order_id: id,
                            sku: sku.into(),
                        })?;
                        if total > 5_000 {
                            // Rolls back the order; the effects are discarded.
                            return Err(OrderError::Declined(total));
                        }
                        Ok(id)
                    })
                })
                .await;
            match placed {
                Ok(id) => println!("  committed order {id}"),
                Err(error) => println!("  rolled back: {error}"),
            }
        }
        if let Some(relay) = relay {
            let outbox = Outbox::new(pool.clone());
            while outbox.count(RowState::Pending).await? > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            relay.shutdown().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // let spawned tasks print
        pool.close().await;
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let outbox = std::env::args().skip(1).any(|arg| arg == "--outbox");
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            std::env::temp_dir().join("airlock-orders.db").display()
        )
    });
    println!(
        "database: {url}; effects: {}",
        if outbox {
            "outbox + relay"
        } else {
            "after COMMIT"
        }
    );
    const COLUMNS: &str = "email TEXT NOT NULL, sku TEXT NOT NULL, total_cents BIGINT NOT NULL";
    if url.starts_with("postgres") {
        demo!(
            PgPool::connect(&url).await?,
            outbox,
            sqlx::AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS example_orders (id BIGSERIAL PRIMARY KEY, {COLUMNS})"
            ))
        );
    } else {
        demo!(
            SqlitePool::connect(&url).await?,
            outbox,
            sqlx::AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS example_orders (id INTEGER PRIMARY KEY AUTOINCREMENT, {COLUMNS})"
            ))
        );
    }
    Ok(())
}
