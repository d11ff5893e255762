//! An order service on axum: each request runs in its own airlock scope
//! (`AirlockLayer`), so the confirmation email and the warehouse
//! notification go out only when the response says the order went through.
//!
//! ```text
//! cargo run --example shop            # serves on 127.0.0.1:3000 (PORT overrides)
//!
//! # 201: both effects are dispatched (see the server's log)
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"kettle","quantity":1}'
//! # 422: validation failed, nothing was enqueued
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"nobody","sku":"kettle","quantity":0}'
//! # 402: the payment was declined after the effects were enqueued: discarded
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"piano","quantity":1}'
//! # 500: the store failed after the effects were enqueued: discarded
//! curl -i -X POST localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"ada@example.com","sku":"faulty","quantity":1}'
//! curl -i localhost:3000/orders/1
//! ```

use std::sync::Arc;

use airlock::tower::AirlockLayer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use store::{MemoryStore, NewOrder, Order, OrderStore, StoreError};

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

/// Where orders are kept: behind a trait, so the in-memory store can give
/// way to a database without touching the handlers.
mod store {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use serde::Serialize;

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
    #[error("the order store is unavailable: {0}")]
    pub(crate) struct StoreError(pub(crate) String);

    /// The orders.
    pub(crate) trait OrderStore: Send + Sync + 'static {
        /// Saves `order`, returning it with its id.
        fn insert(&self, order: NewOrder, total_cents: u64) -> Result<Order, StoreError>;
        /// Records that the order was paid for.
        fn mark_paid(&self, id: u64) -> Result<(), StoreError>;
        /// The order with `id`, if there is one.
        fn get(&self, id: u64) -> Result<Option<Order>, StoreError>;
    }

    /// Orders in a `HashMap`. Marking a `faulty` order paid fails, to show
    /// the 5xx path.
    #[derive(Default)]
    pub(crate) struct MemoryStore {
        orders: Mutex<HashMap<u64, Order>>,
    }

    impl OrderStore for MemoryStore {
        fn insert(&self, order: NewOrder, total_cents: u64) -> Result<Order, StoreError> {
            let mut orders = self.orders.lock().unwrap();
            let order = Order {
                id: orders.len() as u64 + 1,
                email: order.email,
                sku: order.sku,
                quantity: order.quantity,
                total_cents,
                paid: false,
            };
            orders.insert(order.id, order.clone());
            Ok(order)
        }

        fn mark_paid(&self, id: u64) -> Result<(), StoreError> {
            let mut orders = self.orders.lock().unwrap();
            match orders.get_mut(&id) {
                Some(order) if order.sku == "faulty" => {
                    Err(StoreError(format!("disk full while saving order {id}")))
                }
                Some(order) => {
                    order.paid = true;
                    Ok(())
                }
                None => Err(StoreError(format!("order {id} vanished"))),
            }
        }

        fn get(&self, id: u64) -> Result<Option<Order>, StoreError> {
            Ok(self.orders.lock().unwrap().get(&id).cloned())
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
        let body = Body {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

type Shop = Arc<dyn OrderStore>;

/// Prices in cents; anything else is an unknown SKU.
fn price_cents(sku: &str) -> Option<u64> {
    match sku {
        "kettle" => Some(2_500),
        "faulty" => Some(1_000),
        "piano" => Some(900_000),
        _ => None,
    }
}

/// The domain: places an order, states its effects, then takes the payment.
/// The card on file covers 5,000 cents; above that the payment is declined
/// after the effects were enqueued, and the 402 makes the scope discard
/// them. (The in-memory store keeps the unpaid order; a database
/// transaction inside the layer would roll it back.)
fn place(store: &dyn OrderStore, request: PlaceOrder) -> Result<Order, ApiError> {
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
    let order = store.insert(new, total_cents)?;
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
    store.mark_paid(order.id)?;
    Ok(Order {
        paid: true,
        ..order
    })
}

async fn place_order(
    State(store): State<Shop>,
    Json(request): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let order = place(store.as_ref(), request)?;
    tracing::info!(order_id = order.id, "order placed");
    Ok((StatusCode::CREATED, Json(order)))
}

async fn get_order(
    State(store): State<Shop>,
    Path(id): Path<u64>,
) -> Result<Json<Order>, ApiError> {
    store.get(id)?.map(Json).ok_or(ApiError::NotFound(id))
}

/// The service, with one airlock scope per request.
fn app(store: Shop) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .with_state(store)
        .layer(AirlockLayer::new())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,airlock=warn".into()),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| anyhow::anyhow!("PORT must be a port number, got `{port}`"))?,
        Err(_) => 3000,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {error}"))?;
    tracing::info!("shop listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(Arc::new(MemoryStore::default())))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
