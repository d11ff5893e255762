//! Axum handler shapes (feature `axum`): judged by status. `impl
//! IntoResponse` compiles only with `always_flush`.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

struct AppError;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        StatusCode::BAD_GATEWAY.into_response()
    }
}

#[airlock::scoped]
async fn response(status: StatusCode) -> Response {
    airlock::enqueue(Send { n: 1 }).unwrap();
    status.into_response()
}

#[airlock::scoped]
async fn result(status: StatusCode, fail: bool) -> Result<(StatusCode, String), AppError> {
    airlock::enqueue(Send { n: 1 }).unwrap();
    if fail {
        return Err(AppError);
    }
    Ok((status, "body".to_owned()))
}

#[airlock::scoped]
fn status(status: StatusCode) -> StatusCode {
    airlock::enqueue(Send { n: 1 }).unwrap();
    status
}

#[airlock::scoped(always_flush)]
async fn anything(status: StatusCode) -> impl IntoResponse {
    airlock::enqueue(Send { n: 1 }).unwrap();
    status
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    response(StatusCode::OK).await;
    assert_eq!(sent(), 1);
    response(StatusCode::NOT_FOUND).await;
    assert_eq!(sent(), 0);
    let _ = result(StatusCode::SEE_OTHER, false).await;
    assert_eq!(sent(), 1);
    let _ = result(StatusCode::OK, true).await;
    assert_eq!(sent(), 0);
    let _ = result(StatusCode::CONFLICT, false).await;
    assert_eq!(sent(), 0);
    status(StatusCode::NO_CONTENT);
    assert_eq!(sent(), 1);
    status(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(sent(), 0);
    let _ = anything(StatusCode::NOT_FOUND).await;
    assert_eq!(sent(), 1);
}
