//! `#[airlock::scoped]` on axum handlers (feature `axum`): the handler's
//! scope flushes or discards by the response's status, as
//! [`AirlockLayer`](crate::tower::AirlockLayer) does for a whole service.
//!
//! A handler that returns one of these shapes is judged by its status
//! (below 400 flushes; 4xx and 5xx discard):
//!
//! - [`Response`](::axum::response::Response) (any `http::Response<B>` with
//!   `B: Default`);
//! - [`StatusCode`];
//! - `(StatusCode, T)`;
//! - `Result<T, E>` where `T` is one of these and `E: IntoResponse`: `Err`
//!   discards.
//!
//! Other `Result<T, E>` shapes keep their usual meaning (`Ok` flushes, `Err`
//! discards): `Result<Json<T>, AppError>` needs nothing more. A handler
//! declared to return `impl IntoResponse` is a compile error: its status
//! cannot be read without turning it into a response, and a 4xx there must
//! not flush. Return `Response` (call `.into_response()`), put the
//! [layer](crate::tower) in front of the routes instead, or write
//! `#[airlock::scoped(always_flush)]` to flush whatever it returns.
//!
//! ```
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//! # use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct Notify { order: u64 }
//! # impl Task for Notify { const NAME: &'static str = "notify"; fn run(self) -> Run { Run::ok() } }
//!
//! #[airlock::scoped]
//! async fn pay(order: u64, declined: bool) -> Response {
//!     airlock::enqueue(Notify { order }).unwrap();
//!     if declined {
//!         // 402: the notification is discarded with the scope.
//!         return (StatusCode::PAYMENT_REQUIRED, "declined").into_response();
//!     }
//!     StatusCode::OK.into_response()
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(pay(7, true).await.status(), StatusCode::PAYMENT_REQUIRED);
//! # }
//! ```
//!
//! # Flush failures
//!
//! When the flush fails after a successful response, the intents that were
//! not dispatched go to the undelivered hook
//! ([`airlock::undelivered`](crate::undelivered)), and a shape that can say
//! so is turned into a failure: a `Response` becomes an empty 500, a
//! `StatusCode` or `(StatusCode, T)` gets the status 500.

use ::axum::http::{Response, StatusCode};
use ::axum::response::IntoResponse;

use crate::Error;

/// A handler's return value whose success airlock reads by its HTTP status.
///
/// Implemented for the shapes listed in the [module docs](self).
#[diagnostic::on_unimplemented(
    message = "airlock cannot read an HTTP status from `{Self}`",
    note = "return `Response`, `StatusCode`, `(StatusCode, T)` or `Result<T, E: IntoResponse>` of one of them"
)]
pub trait HttpOutcome: Sized {
    /// Whether the handler succeeded: a status below 400.
    fn is_success(&self) -> bool;

    /// The value to return when the handler succeeded but its flush failed;
    /// the undispatched intents have gone to the undelivered hook.
    fn absorb_flush_error(self, error: Error) -> Self;
}

fn succeeded(status: StatusCode) -> bool {
    status.as_u16() < 400
}

const CAUSE: &str = "flush failed after the HTTP handler succeeded";

impl<B: Default> HttpOutcome for Response<B> {
    fn is_success(&self) -> bool {
        succeeded(self.status())
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        crate::tower::hand_to_hook(error, CAUSE);
        crate::tower::internal_server_error()
    }
}

impl HttpOutcome for StatusCode {
    fn is_success(&self) -> bool {
        succeeded(*self)
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        crate::tower::hand_to_hook(error, CAUSE);
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl<T> HttpOutcome for (StatusCode, T) {
    fn is_success(&self) -> bool {
        succeeded(self.0)
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        crate::tower::hand_to_hook(error, CAUSE);
        (StatusCode::INTERNAL_SERVER_ERROR, self.1)
    }
}

impl<T: HttpOutcome, E: IntoResponse> HttpOutcome for Result<T, E> {
    fn is_success(&self) -> bool {
        self.as_ref().is_ok_and(T::is_success)
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        match self {
            Ok(ok) => Ok(ok.absorb_flush_error(error)),
            Err(err) => {
                crate::tower::hand_to_hook(error, CAUSE);
                Err(err)
            }
        }
    }
}
