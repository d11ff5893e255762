//! The server `bench/http.sh` loads: the same axum service without
//! `AirlockLayer`, with it on the routes, or with it around the router.
//!
//! ```text
//! airlock-bench-http PORT CONFIG   # CONFIG: plain (no layer), layer
//!                                  # (`Router::layer`) or around (the layer
//!                                  # around the whole router)
//! ```
//!
//! Routes: `/zero` answers `ok`; `/one` also causes one effect (an atomic
//! increment). Without the layer `/one` performs it in place; with the layer
//! it enqueues it, and the inline executor runs it when the request's scope
//! flushes: the whole cost of deferring one effect.
//!
//! `WORKERS` sets the tokio worker threads (default 1).

use airlock::tower::AirlockLayer;
use axum::Router;
use axum::ServiceExt;
use axum::extract::Request;
use axum::routing::get;
use tower::Layer;

use airlock_bench_http::{one_enqueued, one_in_place, zero};

fn usage(problem: &str) -> ! {
    eprintln!("airlock-bench-http: {problem}\nusage: airlock-bench-http PORT plain|layer|around");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, config] = args.as_slice() else {
        usage("expected two arguments")
    };
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| usage(&format!("PORT {port:?} is not a port number")));
    if !["plain", "layer", "around"].contains(&config.as_str()) {
        usage(&format!(
            "CONFIG {config:?} is none of plain, layer, around"
        ));
    }
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
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|error| panic!("cannot listen on 127.0.0.1:{port}: {error}"));
        println!("listening on 127.0.0.1:{port} ({config})");
        let served = match config.as_str() {
            "plain" => {
                let plain = Router::new()
                    .route("/zero", get(zero))
                    .route("/one", get(one_in_place));
                axum::serve(listener, plain).await
            }
            "layer" => {
                let layered = Router::new()
                    .route("/zero", get(zero))
                    .route("/one", get(one_enqueued))
                    .layer(AirlockLayer::new());
                axum::serve(listener, layered).await
            }
            _ => {
                // The layer around the whole router: one scope per request
                // without the per-route boxing `Router::layer` adds for any
                // layer.
                let around = AirlockLayer::new().layer(
                    Router::new()
                        .route("/zero", get(zero))
                        .route("/one", get(one_enqueued)),
                );
                axum::serve(listener, ServiceExt::<Request>::into_make_service(around)).await
            }
        };
        served.expect("axum::serve");
    });
}
