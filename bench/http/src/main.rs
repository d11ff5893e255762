//! The server `bench/http.sh` loads with `wrk`: one axum service, served
//! twice from one process, so both halves share the runtime and the
//! machine's noise.
//!
//! ```text
//! airlock-bench-http PORT   # PORT: without the layer; PORT+1: AirlockLayer on the
//!                           # routes (`Router::layer`); PORT+2: around the router
//! ```
//!
//! Routes: `/zero` answers `ok`; `/one` also causes one effect (an atomic
//! increment). Without the layer `/one` performs it in place; with the layer
//! it enqueues it, and the inline executor runs it when the request's scope
//! flushes: the whole cost of deferring one effect.

use airlock::tower::AirlockLayer;
use axum::Router;
use axum::ServiceExt;
use axum::extract::Request;
use axum::routing::get;
use tower::Layer;

use airlock_bench_http::{one_enqueued, one_in_place, zero};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .expect("usage: airlock-bench-http PORT (serves PORT and PORT+1)");
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|workers| workers.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let plain = Router::new()
            .route("/zero", get(zero))
            .route("/one", get(one_in_place));
        let layered = Router::new()
            .route("/zero", get(zero))
            .route("/one", get(one_enqueued))
            .layer(AirlockLayer::new());
        // The layer around the whole router: one scope per request without
        // the per-route boxing `Router::layer` adds for any layer.
        let around = AirlockLayer::new().layer(
            Router::new()
                .route("/zero", get(zero))
                .route("/one", get(one_enqueued)),
        );
        let listen = |port: u16| async move {
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap_or_else(|error| panic!("cannot listen on 127.0.0.1:{port}: {error}"))
        };
        let (plain_listener, layered_listener, around_listener) =
            tokio::join!(listen(port), listen(port + 1), listen(port + 2));
        println!(
            "listening on 127.0.0.1:{port} (plain), :{} (layer on the routes) and :{} (around the router)",
            port + 1,
            port + 2
        );
        let (plain, layered, around) = tokio::join!(
            axum::serve(plain_listener, plain).into_future(),
            axum::serve(layered_listener, layered).into_future(),
            axum::serve(
                around_listener,
                ServiceExt::<Request>::into_make_service(around)
            )
            .into_future(),
        );
        for served in [plain, layered, around] {
            served.expect("axum::serve");
        }
    });
}
