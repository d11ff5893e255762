use axum::http::StatusCode;
use axum::response::IntoResponse;

#[airlock::scoped]
async fn handler() -> impl IntoResponse {
    StatusCode::NOT_FOUND
}

#[airlock::scoped]
async fn nested() -> Result<impl IntoResponse, StatusCode> {
    Ok(StatusCode::OK)
}

fn main() {
    let _ = handler();
    let _ = nested();
}
