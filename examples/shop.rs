//! An order service on axum and sqlx: each request runs in its own airlock
//! scope (`AirlockLayer`), and the order insert and its effects share one
//! database transaction (`airlock::sqlx`), so the confirmation email and the
//! warehouse notification go out only after the order is committed.
//!
//! ```text
//! cargo run --example shop                 # SQLite file in the temp dir, 127.0.0.1:3000
//! cargo run --example shop -- --outbox     # effects written to the outbox, sent by the relay
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example shop
//!
//! # 201: committed, then both effects are dispatched (see the server's log)
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"kettle","quantity":1}'
//! # 422: validation failed, nothing was enqueued
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"nobody","sku":"kettle","quantity":0}'
//! # 402: the payment was declined after the effects were enqueued: rolled back, discarded
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"piano","quantity":1}'
//! # 500: the store failed after the effects were enqueued: rolled back, discarded
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"faulty","quantity":1}'
//! curl -i localhost:3000/orders/1
//! ```

use std::sync::Arc;

use airlock::InlineExecutor;
use airlock::sqlx::{Relay, RelayHandle, TxError};
use airlock::tower::AirlockLayer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use store::{Db, NewOrder, Order, StoreError};

/// Emails the customer that the order went through.
#[airlock::task(name = "shop.send_confirmation_email")]
fn send_confirmation_email(order_id: u64, to: String) {
    tracing::info!(order_id, %to, "dispatched: confirmation email");
}

/// Tells the warehouse to ship the order.
#[airlock::task(name = "shop.notify_warehouse", queue = "warehouse")]
async fn notify_warehouse(order_id: u64, sku: String, quantity: u32) {
    tracing::info!(order_id, %sku, quantity, "dispatched: warehouse notified");
}

/// Where orders are kept: SQLite or PostgreSQL through sqlx, each order
/// written in an airlock transaction scope.
mod store {
    use airlock::sqlx::{TxError, TxScope};
    use serde::Serialize;
    use sqlx::{PgPool, Row, SqlitePool};

    /// An order to place.
    #[derive(Clone, Debug)]
    pub(crate) struct NewOrder {
        pub(crate) email: String,
        pub(crate) sku: String,
        pub(crate) quantity: u32,
    }

    /// A placed order.
    #[derive(Clone, Debug, Serialize)]
    pub(crate) struct Order {
        pub(crate) id: u64,
        pub(crate) email: String,
        pub(crate) sku: String,
        pub(crate) quantity: u32,
        pub(crate) total_cents: u64,
        pub(crate) paid: bool,
    }

    /// The store could not do its job.
    #[derive(Debug, thiserror::Error)]
    pub(crate) enum StoreError {
        /// The database failed, or the transaction did not commit.
        #[error("the order store failed")]
        Tx(#[from] TxError),
        /// A simulated fault (the `faulty` SKU), to show the 5xx path.
        #[error("the order store is unavailable: {0}")]
        Unavailable(String),
    }

    impl From<sqlx::Error> for StoreError {
        fn from(error: sqlx::Error) -> Self {
            StoreError::Tx(error.into())
        }
    }

    /// The database, and the transaction scope its orders are written in.
    pub(crate) enum Db {
        Sqlite(SqlitePool, TxScope<sqlx::Sqlite>),
        Postgres(PgPool, TxScope<sqlx::Postgres>),
    }

    /// Runs `$body` with `$pool` and `$scope` bound to the backend's own
    /// types: the SQL is the same, the types are not.
    macro_rules! on_db {
        ($db:expr, |$pool:ident, $scope:ident| $body:expr) => {
            match $db {
                Db::Sqlite($pool, $scope) => $body,
                Db::Postgres($pool, $scope) => $body,
            }
        };
    }
    pub(crate) use on_db;

    const COLUMNS: &str = "email TEXT NOT NULL, sku TEXT NOT NULL, quantity BIGINT NOT NULL, \
                           total_cents BIGINT NOT NULL, paid BOOLEAN NOT NULL DEFAULT FALSE";

    impl Db {
        /// Connects to `url` (`sqlite:` or `postgres:`), creates the tables
        /// (airlock's outbox included) and picks the mode.
        pub(crate) async fn open(url: &str, outbox: bool) -> anyhow::Result<Db> {
            let db = if url.starts_with("postgres") {
                let pool = PgPool::connect(url).await?;
                let create = format!(
                    "CREATE TABLE IF NOT EXISTS shop_orders (id BIGSERIAL PRIMARY KEY, {COLUMNS})"
                );
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&pool)
                    .await?;
                Db::Postgres(pool, TxScope::new())
            } else {
                let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
                let pool = SqlitePool::connect_with(options.create_if_missing(true)).await?;
                let create = format!(
                    "CREATE TABLE IF NOT EXISTS shop_orders \
                     (id INTEGER PRIMARY KEY AUTOINCREMENT, {COLUMNS})"
                );
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&pool)
                    .await?;
                Db::Sqlite(pool, TxScope::new())
            };
            Ok(match db {
                Db::Sqlite(pool, scope) => {
                    airlock::sqlx::migrate(&pool).await?;
                    Db::Sqlite(pool, if outbox { scope.outbox() } else { scope })
                }
                Db::Postgres(pool, scope) => {
                    airlock::sqlx::migrate(&pool).await?;
                    Db::Postgres(pool, if outbox { scope.outbox() } else { scope })
                }
            })
        }

        /// Saves the order and runs `then` (the effects, the payment) in the
        /// same transaction: all of it commits, or none.
        pub(crate) async fn place<E>(
            &self,
            new: NewOrder,
            total_cents: u64,
            then: impl FnOnce(&Order) -> Result<(), E> + Send,
        ) -> Result<Order, E>
        where
            E: From<StoreError> + From<TxError> + Send,
        {
            on_db!(self, |pool, scope| {
                scope
                    .run(pool, |tx| {
                        Box::pin(async move {
                            let id: i64 = sqlx::query_scalar(
                                "INSERT INTO shop_orders (email, sku, quantity, total_cents) \
                                 VALUES ($1, $2, $3, $4) RETURNING id",
                            )
                            .bind(&new.email)
                            .bind(&new.sku)
                            .bind(i64::from(new.quantity))
                            .bind(total_cents as i64)
                            .fetch_one(&mut **tx)
                            .await
                            .map_err(StoreError::from)?;
                            let order = Order {
                                id: id as u64,
                                email: new.email,
                                sku: new.sku,
                                quantity: new.quantity,
                                total_cents,
                                paid: false,
                            };
                            then(&order)?;
                            if order.sku == "faulty" {
                                return Err(StoreError::Unavailable(format!(
                                    "disk full while saving order {id}"
                                ))
                                .into());
                            }
                            sqlx::query("UPDATE shop_orders SET paid = TRUE WHERE id = $1")
                                .bind(id)
                                .execute(&mut **tx)
                                .await
                                .map_err(StoreError::from)?;
                            Ok(Order {
                                paid: true,
                                ..order
                            })
                        })
                    })
                    .await
            })
        }

        /// The order with `id`, if there is one.
        pub(crate) async fn get(&self, id: u64) -> Result<Option<Order>, StoreError> {
            const SELECT: &str = "SELECT id, email, sku, quantity, total_cents, paid \
                                  FROM shop_orders WHERE id = $1";
            let id = id as i64;
            let order = on_db!(self, |pool, _scope| {
                sqlx::query(SELECT)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| -> Result<Order, sqlx::Error> {
                        Ok(Order {
                            id: row.try_get::<i64, _>("id")? as u64,
                            email: row.try_get("email")?,
                            sku: row.try_get("sku")?,
                            quantity: row.try_get::<i64, _>("quantity")? as u32,
                            total_cents: row.try_get::<i64, _>("total_cents")? as u64,
                            paid: row.try_get("paid")?,
                        })
                    })
                    .transpose()?
            });
            Ok(order)
        }
    }
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
struct PlaceOrder {
    email: String,
    sku: String,
    quantity: u32,
}

/// What went wrong, as the client sees it.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("payment declined: {0}")]
    Declined(String),
    #[error("order {0} not found")]
    NotFound(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Airlock(#[from] airlock::Error),
}

impl From<TxError> for ApiError {
    fn from(error: TxError) -> Self {
        ApiError::Store(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Declined(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) | ApiError::Airlock(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let body = Body {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

type Shop = Arc<Db>;

/// Prices in cents; anything else is an unknown SKU.
fn price_cents(sku: &str) -> Option<u64> {
    match sku {
        "kettle" => Some(2_500),
        "faulty" => Some(1_000),
        "piano" => Some(900_000),
        _ => None,
    }
}

/// The domain: places an order, states its effects, then takes the payment,
/// all in one transaction. The card on file covers 5,000 cents; above that
/// the payment is declined after the effects were enqueued: the transaction
/// rolls back, the order is gone and the effects are discarded.
async fn place(db: &Db, request: PlaceOrder) -> Result<Order, ApiError> {
    if !request.email.contains('@') {
        return Err(ApiError::Invalid(format!(
            "`{}` is not an email address",
            request.email
        )));
    }
    if request.quantity == 0 {
        return Err(ApiError::Invalid("quantity must be at least 1".into()));
    }
    let unit = price_cents(&request.sku)
        .ok_or_else(|| ApiError::Invalid(format!("unknown sku `{}`", request.sku)))?;
    let total_cents = unit * u64::from(request.quantity);
    let new = NewOrder {
        email: request.email,
        sku: request.sku,
        quantity: request.quantity,
    };
    db.place(new, total_cents, |order| {
        airlock::enqueue(SendConfirmationEmail {
            order_id: order.id,
            to: order.email.clone(),
        })?;
        airlock::enqueue(NotifyWarehouse {
            order_id: order.id,
            sku: order.sku.clone(),
            quantity: order.quantity,
        })?;
        if total_cents > 5_000 {
            return Err(ApiError::Declined(format!(
                "{total_cents} cents is over the card's limit"
            )));
        }
        Ok(())
    })
    .await
}

async fn place_order(
    State(db): State<Shop>,
    Json(request): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let order = place(&db, request).await?;
    tracing::info!(order_id = order.id, "order placed");
    Ok((StatusCode::CREATED, Json(order)))
}

async fn get_order(State(db): State<Shop>, Path(id): Path<u64>) -> Result<Json<Order>, ApiError> {
    db.get(id).await?.map(Json).ok_or(ApiError::NotFound(id))
}

/// The service, with one airlock scope per request.
fn app(db: Shop) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .with_state(db)
        .layer(AirlockLayer::new())
}

/// With `--outbox`, the relay that dispatches committed effects.
fn start_relay(db: &Db) -> RelayHandle {
    store::on_db!(db, |pool, _scope| Relay::new(pool.clone(), InlineExecutor)
        .spawn())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,airlock=warn,sqlx=warn".into()),
        )
        .init();
    let outbox = std::env::args().skip(1).any(|arg| arg == "--outbox");
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| anyhow::anyhow!("PORT must be a port number, got `{port}`"))?,
        Err(_) => 3000,
    };
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join("airlock-shop.db");
        format!("sqlite://{}", path.display())
    });
    let db = Arc::new(
        Db::open(&url, outbox)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open the database at {url}: {error}"))?,
    );
    let relay = outbox.then(|| start_relay(&db));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {error}"))?;
    tracing::info!(
        database = %url,
        mode = if outbox { "outbox" } else { "post-commit" },
        "shop listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app(db))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    Ok(())
}
