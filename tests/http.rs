//! The HTTP boundary: `AirlockLayer` in front of a real axum server, driven
//! by a real HTTP client, and `#[airlock::scoped]` on axum handlers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use airlock::tower::AirlockLayer;
use airlock::{Dispatch, Executor, Intents};
use airlock_tests::{Log, http_client, serve, wait_for_runs};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, oneshot};
use tower::{Layer as _, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

/// `GET /status/{code}`: enqueues `code`, answers with that status.
fn status_routes(log: &Log) -> Router {
    let log = log.clone();
    Router::new().route(
        "/status/{code}",
        get(move |Path(code): Path<u16>| async move {
            airlock::enqueue(log.record(code.to_string())).unwrap();
            let mut response = StatusCode::from_u16(code).unwrap().into_response();
            if (300..400).contains(&code) {
                response
                    .headers_mut()
                    .insert("location", "/elsewhere".parse().unwrap());
            }
            response
        }),
    )
}

async fn get_status(address: std::net::SocketAddr, path: &str) -> u16 {
    http_client()
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_hundreds_flush_four_and_five_hundreds_discard() {
    let log = Log::new();
    let address = serve(status_routes(&log).layer(AirlockLayer::new())).await;
    let codes = [200, 201, 204, 302, 303, 400, 404, 422, 500, 503];
    for code in codes {
        assert_eq!(get_status(address, &format!("/status/{code}")).await, code);
    }
    // The inline executor dispatches before the response is sent.
    assert_eq!(log.runs(), ["200", "201", "204", "302", "303"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_layer_there_is_no_scope() {
    let log = Log::new();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let sink = seen.clone();
    let app = Router::new().route(
        "/",
        get(move || async move {
            *sink.lock().unwrap() = Some(airlock::enqueue(log.record("x")).is_err());
            StatusCode::OK
        }),
    );
    let address = serve(app).await;
    assert_eq!(get_status(address, "/").await, 200);
    assert_eq!(
        *seen.lock().unwrap(),
        Some(true),
        "NoScope without the layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_success_predicate_decides() {
    let log = Log::new();
    let layer = AirlockLayer::new().success_when(|status| status.is_success());
    let address = serve(status_routes(&log).layer(layer)).await;
    for code in [200, 302, 404] {
        assert_eq!(get_status(address, &format!("/status/{code}")).await, code);
    }
    assert_eq!(log.runs(), ["200"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_and_a_flush_on_failure_kind_apply() {
    struct AlwaysFlush;
    impl airlock::ScopeKind for AlwaysFlush {
        fn should_flush(&self, exit: airlock::Exit) -> bool {
            matches!(exit, airlock::Exit::Success | airlock::Exit::Failure)
        }
    }
    let log = Log::new();
    let dropped =
        serve(status_routes(&log).layer(AirlockLayer::new().policy(airlock::DropAll))).await;
    assert_eq!(get_status(dropped, "/status/200").await, 200);
    assert_eq!(log.runs(), Vec::<String>::new(), "DropAll drops");

    let flushed = serve(status_routes(&log).layer(AirlockLayer::new().kind(AlwaysFlush))).await;
    assert_eq!(get_status(flushed, "/status/500").await, 500);
    assert_eq!(log.runs(), ["500"], "the kind flushes on failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_discards_in_either_order_with_catch_panic() {
    for catch_outside in [true, false] {
        let log = Log::new();
        let inner = log.clone();
        let routes = Router::new().route(
            "/",
            get(move || async move {
                airlock::enqueue(inner.record("before the panic")).unwrap();
                let bug = true;
                if bug {
                    panic!("handler bug");
                }
                StatusCode::OK
            }),
        );
        let app = if catch_outside {
            routes
                .layer(AirlockLayer::new())
                .layer(CatchPanicLayer::new())
        } else {
            routes
                .layer(CatchPanicLayer::new())
                .layer(AirlockLayer::new())
        };
        let address = serve(app).await;
        assert_eq!(get_status(address, "/").await, 500);
        assert_eq!(
            log.runs(),
            Vec::<String>::new(),
            "catch outside: {catch_outside}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_discards_in_either_order() {
    for timeout_outside in [true, false] {
        let log = Log::new();
        let inner = log.clone();
        let routes = Router::new().route(
            "/slow",
            get(move || async move {
                airlock::enqueue(inner.record("slow")).unwrap();
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        );
        let timeout =
            TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(50));
        let app = if timeout_outside {
            routes.layer(AirlockLayer::new()).layer(timeout)
        } else {
            routes.layer(timeout).layer(AirlockLayer::new())
        };
        let address = serve(app).await;
        assert_eq!(get_status(address, "/slow").await, 408);
        assert_eq!(
            log.runs(),
            Vec::<String>::new(),
            "timeout outside: {timeout_outside}"
        );
    }
}

/// Sends its signal when dropped: shows that the server dropped the
/// handler's future.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_discards() {
    let log = Log::new();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
    let hooks = Arc::new(std::sync::Mutex::new(Some((started_tx, dropped_tx))));
    let inner = log.clone();
    let app = Router::new()
        .route(
            "/wait",
            get(move || async move {
                let (started, dropped) = hooks.lock().unwrap().take().unwrap();
                let _signal = DropSignal(Some(dropped));
                airlock::enqueue(inner.record("never")).unwrap();
                started.send(()).unwrap();
                std::future::pending::<()>().await;
                StatusCode::OK
            }),
        )
        .layer(AirlockLayer::new());
    let address = serve(app).await;

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    started_rx.await.expect("the handler started");
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), dropped_rx)
        .await
        .expect("the server dropped the handler's future within 10 s")
        .unwrap();
    // Give a wrong flush every chance to show.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.runs(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_dispatch_exactly_the_successful_ones() {
    let log = Log::new();
    let inner = log.clone();
    let app = Router::new()
        .route(
            "/orders/{n}",
            post(move |Path(n): Path<u32>| async move {
                airlock::enqueue(inner.record(n.to_string())).unwrap();
                tokio::task::yield_now().await;
                if n % 2 == 1 {
                    return StatusCode::UNPROCESSABLE_ENTITY;
                }
                StatusCode::CREATED
            }),
        )
        .layer(AirlockLayer::new());
    let address = serve(app).await;
    let client = http_client();
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..1000u32 {
        let client = client.clone();
        requests.spawn(async move {
            let response = client
                .post(format!("http://{address}/orders/{n}"))
                .send()
                .await
                .unwrap();
            (n, response.status().as_u16())
        });
    }
    while let Some(result) = requests.join_next().await {
        let (n, status) = result.unwrap();
        assert_eq!(status, if n % 2 == 1 { 422 } else { 201 }, "order {n}");
    }
    let runs = log.runs();
    assert_eq!(runs.len(), 500, "exactly the successful requests' effects");
    let unique: BTreeSet<u32> = runs.iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(unique.len(), 500, "none twice");
    assert_eq!(unique, (0..1000).step_by(2).collect::<BTreeSet<u32>>());
}

/// Holds each batch until a permit is released, then runs it inline.
struct Gated(Arc<Semaphore>);

impl Executor for Gated {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let gate = self.0.clone();
        Dispatch::Pending(Box::pin(async move {
            let _permit = gate.acquire().await.unwrap();
            match airlock::InlineExecutor.dispatch(intents) {
                Dispatch::Done(result) => result,
                Dispatch::Pending(rest) => rest.await,
            }
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_flush_responds_first_and_still_dispatches() {
    let log = Log::new();
    let gate = Arc::new(Semaphore::new(0));
    let layer = AirlockLayer::new()
        .executor(Gated(gate.clone()))
        .flush_in_background();
    let address = serve(status_routes(&log).layer(layer)).await;
    let status = tokio::time::timeout(Duration::from_secs(10), get_status(address, "/status/201"))
        .await
        .expect("the response came while the dispatch was still held back");
    assert_eq!(status, 201);
    assert_eq!(
        log.runs(),
        Vec::<String>::new(),
        "responded before the dispatch"
    );
    gate.add_permits(1);
    assert_eq!(wait_for_runs(&log, 1).await, ["201"]);
    // A failure still discards, in the background or not.
    assert_eq!(get_status(address, "/status/500").await, 500);
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.runs(), ["201"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_background_flush_the_response_waits_for_the_dispatch() {
    let log = Log::new();
    let gate = Arc::new(Semaphore::new(0));
    let address =
        serve(status_routes(&log).layer(AirlockLayer::new().executor(Gated(gate.clone())))).await;
    let request = tokio::spawn(get_status_owned(address, "/status/200"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !request.is_finished(),
        "the response waits for the executor"
    );
    gate.add_permits(1);
    assert_eq!(request.await.unwrap(), 200);
    assert_eq!(log.runs(), ["200"]);
}

async fn get_status_owned(address: std::net::SocketAddr, path: &'static str) -> u16 {
    get_status(address, path).await
}

#[test]
fn the_layer_and_service_show_and_give_back_what_they_hold() {
    let layer = AirlockLayer::new();
    assert!(format!("{layer:?}").contains("status < 400"), "{layer:?}");
    let custom = AirlockLayer::new().success_when(|status| status.is_success());
    assert!(format!("{custom:?}").contains("custom"), "{custom:?}");
    let mut routes = AirlockLayer::new().layer(Router::<()>::new());
    let future = tower::Service::call(&mut routes, http::Request::new(axum::body::Body::empty()));
    assert!(
        format!("{future:?}").starts_with("ResponseFuture"),
        "{future:?}"
    );
    let mut service = layer.layer(5u8);
    assert_eq!(*service.get_ref(), 5);
    *service.get_mut() = 6;
    assert!(format!("{service:?}").contains('6'));
    assert_eq!(service.into_inner(), 6);
}

#[tokio::test]
async fn readiness_is_the_inner_services() {
    // No permits: the inner service never becomes ready, so neither may the
    // layer's.
    let inner = tower::limit::ConcurrencyLimit::new(Router::<()>::new(), 0);
    let mut service = AirlockLayer::new().layer(inner);
    let ready = tokio::time::timeout(
        Duration::from_millis(50),
        ServiceExt::<http::Request<axum::body::Body>>::ready(&mut service),
    )
    .await;
    assert!(ready.is_err(), "ready although the inner service is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_call_counts_and_an_inner_error_discards() {
    let log = Log::new();
    let service = tower::service_fn({
        let log = log.clone();
        move |request: http::Request<String>| {
            // Runs inside `call`, before any future exists.
            airlock::enqueue(log.record(request.uri().path().to_owned())).unwrap();
            let fail = request.uri().path() == "/fail";
            async move {
                if fail {
                    return Err("the inner service failed");
                }
                Ok::<_, &str>(http::Response::new(String::new()))
            }
        }
    });
    let service = AirlockLayer::new().layer(service);
    let ok = service
        .clone()
        .oneshot(http::Request::get("/ok").body(String::new()).unwrap())
        .await;
    assert!(ok.is_ok());
    let failed = service
        .oneshot(http::Request::get("/fail").body(String::new()).unwrap())
        .await;
    assert_eq!(failed.unwrap_err(), "the inner service failed");
    assert_eq!(log.runs(), ["/ok"]);
}

// ---- #[airlock::scoped] on handlers, without the layer ----

#[derive(Debug)]
struct Declined;

impl IntoResponse for Declined {
    fn into_response(self) -> Response {
        (StatusCode::PAYMENT_REQUIRED, "declined").into_response()
    }
}

#[airlock::scoped]
async fn returns_response(State(log): State<Log>, Path(code): Path<u16>) -> Response {
    airlock::enqueue(log.record(format!("response {code}"))).unwrap();
    StatusCode::from_u16(code).unwrap().into_response()
}

#[airlock::scoped]
async fn returns_result(
    State(log): State<Log>,
    Path(code): Path<u16>,
) -> Result<Response, Declined> {
    airlock::enqueue(log.record(format!("result {code}"))).unwrap();
    if code == 402 {
        return Err(Declined);
    }
    Ok(StatusCode::from_u16(code).unwrap().into_response())
}

#[airlock::scoped]
async fn returns_tuple(State(log): State<Log>, Path(code): Path<u16>) -> (StatusCode, String) {
    airlock::enqueue(log.record(format!("tuple {code}"))).unwrap();
    (StatusCode::from_u16(code).unwrap(), "body".to_owned())
}

#[airlock::scoped]
fn returns_status_sync(log: &Log, code: u16) -> StatusCode {
    airlock::enqueue(log.record(format!("status {code}"))).unwrap();
    StatusCode::from_u16(code).unwrap()
}

#[airlock::scoped(always_flush)]
async fn returns_anything(State(log): State<Log>, Path(code): Path<u16>) -> impl IntoResponse {
    airlock::enqueue(log.record(format!("always {code}"))).unwrap();
    StatusCode::from_u16(code).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_handlers_are_judged_by_status() {
    let log = Log::new();
    let app = Router::new()
        .route("/response/{code}", get(returns_response))
        .route("/result/{code}", get(returns_result))
        .route("/tuple/{code}", get(returns_tuple))
        .route("/always/{code}", get(returns_anything))
        .with_state(log.clone());
    let address = serve(app).await;
    for (path, code) in [
        ("response", 200),
        ("response", 303),
        ("response", 404),
        ("result", 201),
        ("result", 402),
        ("result", 500),
        ("tuple", 200),
        ("tuple", 409),
        ("always", 404),
    ] {
        assert_eq!(get_status(address, &format!("/{path}/{code}")).await, code);
    }
    assert_eq!(
        log.runs(),
        [
            "response 200",
            "response 303",
            "result 201",
            "tuple 200",
            "always 404"
        ]
    );
    assert_eq!(returns_status_sync(&log, 204), StatusCode::NO_CONTENT);
    assert_eq!(returns_status_sync(&log, 400), StatusCode::BAD_REQUEST);
    assert_eq!(log.runs().last().unwrap(), "status 204");
}
