//! The layer's own cost per request, without sockets: the same axum
//! `Router` called in a loop through `tower::ServiceExt::oneshot` on a
//! current-thread runtime, with and without `AirlockLayer`, alternating.
//!
//! ```text
//! cargo run --release -p airlock-bench-http --bin overhead [REQUESTS] [ROUNDS]
//! SIZES=1 cargo run ...        # only print how much the layer adds to a response future
//! ONLY="layer /zero" cargo run ...   # run one configuration, for a profiler
//! ```

use std::hint::black_box;
use std::sync::atomic::Ordering;

use airlock::tower::AirlockLayer;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt;

use airlock_bench_http::{EFFECTS, one_enqueued, one_in_place, zero};

/// Nanoseconds per request (`with_state(())` above turns the handlers into
/// routes once, as `axum::serve` does per connection; a bare `Router<()>`
/// called directly would apply its layers again on every request).
/// for `requests` calls of `path`.
///
/// Timed in this thread's CPU time (`/proc/thread-self/schedstat`), not wall
/// time: on a machine shared with other builds, wall time mostly measures
/// how often the thread was preempted.
async fn run(app: &App, path: &str, requests: u32) -> f64 {
    let start = thread_cpu_ns();
    for _ in 0..requests {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = match app {
            App::Routes(router) => router.clone().oneshot(request).await,
            App::Around(service) => service.clone().oneshot(request).await,
        }
        .unwrap();
        black_box(response);
    }
    (thread_cpu_ns() - start) as f64 / f64::from(requests)
}

/// A service under test: a `Router` (with or without layers on its routes),
/// or `AirlockLayer` around a whole `Router`.
enum App {
    Routes(Router),
    Around(airlock::tower::Airlock<Router>),
}

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux) for the thread's CPU time");
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat starts with the CPU time in ns")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(7);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    if std::env::var_os("SIZES").is_some() {
        use tower::{Layer, Service};
        let inner = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
        });
        let mut layered = AirlockLayer::new().layer(inner);
        let mut inner = inner;
        let request = || Request::get("/").body(Body::empty()).unwrap();
        println!(
            "inner future {} bytes, layered {} bytes",
            std::mem::size_of_val(&inner.call(request())),
            std::mem::size_of_val(&layered.call(request()))
        );
        let mut router = Router::new().route("/zero", get(zero)).with_state(());
        let mut around = AirlockLayer::new().layer(router.clone());
        println!(
            "a Router's future {} bytes, layered {} bytes",
            std::mem::size_of_val(&Service::<Request<Body>>::call(&mut router, request())),
            std::mem::size_of_val(&around.call(request()))
        );
        return;
    }
    runtime.block_on(async move {
        let plain = Router::new()
            .route("/zero", get(zero))
            .route("/one", get(one_in_place))
            .with_state(());
        let layered = Router::new()
            .route("/zero", get(zero))
            .route("/one", get(one_enqueued))
            .layer(AirlockLayer::new())
            .with_state(());
        // What any layer costs in axum (`Router::layer` boxes each route once
        // more): a layer that does nothing.
        let identity = Router::new()
            .route("/zero", get(zero))
            .route("/one", get(one_in_place))
            .layer(tower::layer::util::Identity::new())
            .with_state(());
        // The layer around the whole router, as `bench/http.sh` serves it.
        let around = {
            use tower::Layer;
            App::Around(
                AirlockLayer::new().layer(
                    Router::new()
                        .route("/zero", get(zero))
                        .route("/one", get(one_enqueued))
                        .with_state(()),
                ),
            )
        };
        let (plain, identity, layered) = (
            App::Routes(plain),
            App::Routes(identity),
            App::Routes(layered),
        );
        let configs = [
            ("plain /zero", &plain, "/zero"),
            ("noop /zero", &identity, "/zero"),
            ("layer /zero", &layered, "/zero"),
            ("around /zero", &around, "/zero"),
            ("plain /one", &plain, "/one"),
            ("layer /one", &layered, "/one"),
            ("around /one", &around, "/one"),
        ];
        if let Ok(only) = std::env::var("ONLY") {
            // For a profiler: one configuration, by name.
            let (_, app, path) = configs
                .iter()
                .find(|c| c.0 == only)
                .expect("ONLY names a configuration");
            run(app, path, requests).await;
            std::process::exit(0);
        }
        for (_, app, path) in configs {
            run(app, path, requests / 10).await;
        }
        let mut times = vec![Vec::new(); configs.len()];
        for _ in 0..rounds {
            for (index, (_, app, path)) in configs.iter().enumerate() {
                times[index].push(run(app, path, requests).await);
            }
        }
        println!(
            "{requests} requests x {rounds} rounds, alternating; median thread CPU ns per request"
        );
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        for ((name, _, _), ns) in configs.iter().zip(&medians) {
            println!("{name:<12} {ns:>8.0} ns");
        }
        println!(
            "AirlockLayer on the routes adds {:.0} ns with zero effects ({:.0} ns over a no-op \
             layer), {:.0} ns with one (enqueue + flush + inline run vs a direct call)",
            medians[2] - medians[0],
            medians[2] - medians[1],
            medians[5] - medians[4]
        );
        println!(
            "AirlockLayer around the router adds {:.0} ns with zero effects, {:.0} ns with one",
            medians[3] - medians[0],
            medians[6] - medians[4]
        );
    });
    assert!(EFFECTS.load(Ordering::Relaxed) > 0);
}
