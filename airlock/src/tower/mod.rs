//! The HTTP boundary: one scope per request, for axum and any tower service
//! (feature `tower`).
//!
//! [`AirlockLayer`] wraps any `Service<http::Request<B>, Response =
//! http::Response<RB>>` (an axum `Router`, a hyper service, a tonic server).
//! Each request runs in a fresh scope that is current during the inner
//! service's `call` and during every poll of its response future. When the
//! response is ready, the scope:
//!
//! - **flushes** if the status is below 400 (2xx and 3xx);
//! - **discards** on 4xx and 5xx, on an `Err` from the inner service, on a
//!   panic, and when the response future is dropped before it completes
//!   (the client disconnected, a timeout fired).
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::post};
//! use airlock::tower::AirlockLayer;
//! # use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct SendReceipt { order: u64 }
//! # impl Task for SendReceipt { const NAME: &'static str = "send_receipt"; fn run(self) -> Run { Run::ok() } }
//!
//! async fn checkout() -> StatusCode {
//!     // Buffered in the request's scope; sent only if the response is < 400.
//!     if airlock::enqueue(SendReceipt { order: 7 }).is_err() {
//!         return StatusCode::INTERNAL_SERVER_ERROR;
//!     }
//!     StatusCode::CREATED
//! }
//!
//! let app: Router = Router::new()
//!     .route("/checkout", post(checkout))
//!     .layer(AirlockLayer::new());
//! # let _ = app;
//! ```
//!
//! # Around the whole router
//!
//! `Router::layer` wraps every route (and the fallback) on its own: axum
//! boxes each one's service once more, whatever the layer, and the layer runs
//! after routing. To skip that per-route cost, with one scope around routing
//! and the handler alike, wrap the router itself, as axum's docs do for
//! middleware that runs before routing:
//!
//! ```
//! use axum::{Router, ServiceExt, extract::Request, routing::get};
//! use airlock::tower::AirlockLayer;
//! use tower::Layer;
//!
//! # async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
//! let router = Router::new().route("/", get(|| async { "ok" }));
//! let app = AirlockLayer::new().layer(router);
//! axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await
//! # }
//! ```
//!
//! # Options
//!
//! The builder sets the [policy](AirlockLayer::policy),
//! [executor](AirlockLayer::executor) and [scope kind](AirlockLayer::kind)
//! of every request's scope (unset, they come from the
//! [defaults](crate::configure)), [what counts as
//! success](AirlockLayer::success_when), [what a failed flush does to the
//! response](AirlockLayer::on_flush_failure) (by default it becomes a 500,
//! and the intents that were not dispatched go to the undelivered hook,
//! [`airlock::undelivered`](crate::undelivered)), and [whether to respond
//! before dispatching](AirlockLayer::flush_in_background).
//!
//! The layer allocates nothing per request of its own when the scope's
//! settings come from the defaults; an explicit policy, executor or kind
//! costs one small allocation per request in the core (the resolved scope
//! configuration).
//!
//! # Layer order
//!
//! Layers added later with `Router::layer` wrap the ones added before: the
//! last one added is the outermost.
//!
//! - **A database transaction layer**: put airlock *outside* it (add it
//!   after), so the scope ends after the transaction commits and no effect
//!   escapes for a transaction that rolled back. Inside it, the effects would
//!   be dispatched before the COMMIT, which may still fail.
//! - **`CatchPanicLayer`** (tower-http): either order discards on a panic.
//!   Inside it, the panic unwinds through the scope (which discards); outside
//!   it, the scope sees the 500 it turns the panic into.
//! - **`TimeoutLayer`** (tower-http): either order discards on a timeout.
//!   Inside it, the timeout drops the response future (which discards);
//!   outside it, the scope sees the timeout's error status (408 by default).
//!   Put airlock outside when the flush itself may be slow and should not
//!   count against the timeout; inside when it should.
//!
//! # What runs after the scope has ended
//!
//! The scope ends when the response *head* is ready. Work that goes on after
//! that is not part of it, and `airlock::enqueue` there returns
//! [`Error::NoScope`](crate::Error::NoScope):
//!
//! - **a streaming body** (`Body::from_stream`, server-sent events) is polled
//!   by the server after the handler returned. Enqueue what the request
//!   causes before returning the response; for effects that depend on the
//!   stream finishing, open a scope around the stream's own work
//!   (`airlock::scope_async` in the task that produces it), so they escape
//!   when that work succeeds.
//! - **a WebSocket** (`WebSocketUpgrade::on_upgrade`) runs its callback in a
//!   task spawned after the 101 response: open a scope per message or per
//!   connection inside the callback with `airlock::scope_async`.
//! - **work spawned with `tokio::spawn`** does not inherit the scope (rule
//!   11): carry it with [`airlock::handle`](crate::handle) and finish the
//!   work before the handler returns, or give it a scope of its own.
//!
//! # Background flush
//!
//! With [`flush_in_background`](AirlockLayer::flush_in_background), the
//! response goes out as soon as it is judged, and the intents are dispatched
//! afterwards by a tokio task: the client does not wait for a broker's round
//! trip. A dispatch that fails then cannot change the response, so its
//! intents go to the undelivered hook.

mod background;
mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
#[cfg(feature = "axum")]
pub(crate) use self::future::{hand_to_hook, internal_server_error};
pub use self::layer::{AirlockLayer, FlushFailure};
pub use self::service::Airlock;
