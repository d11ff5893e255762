//! `AirlockLayer` when the flush fails: the response follows the configured
//! choice and the undispatched intents reach the undelivered hook.
//!
//! Its own test binary: the hook is set process-wide with
//! `airlock::configure`, because the server's requests end on the runtime's
//! worker threads, where a test's `with_defaults` override does not reach.

use std::sync::{Mutex, Once};

use airlock::tower::{AirlockLayer, FlushFailure};
use airlock::{BoxError, Defaults, Dispatch, Executor, Intents, Undelivered};
use airlock_tests::{Log, http_client, labels, serve};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// What reached the hook: (cause, labels of the intents, error message).
static UNDELIVERED: Mutex<Vec<(String, Vec<String>, String)>> = Mutex::new(Vec::new());

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        airlock::configure(Defaults::new().on_undelivered(|lost: Undelivered| {
            let error = lost.error().map(ToString::to_string).unwrap_or_default();
            UNDELIVERED.lock().unwrap().push((
                lost.cause().to_owned(),
                labels(lost.intents()),
                error,
            ));
        }));
    });
}

/// The hook's entries whose intents carry one of `labels`.
fn undelivered_with(label: &str) -> Vec<(String, Vec<String>, String)> {
    UNDELIVERED
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, labels, _)| labels.iter().any(|l| l == label))
        .cloned()
        .collect()
}

/// A broker that is down: refuses every intent, handing all back.
struct BrokerDown;

impl Executor for BrokerDown {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        Dispatch::each(intents, |_| {
            Err::<(), BoxError>("the broker is down".into())
        })
    }
}

fn app(log: &Log, label: &'static str, layer: AirlockLayer) -> Router {
    let log = log.clone();
    Router::new()
        .route(
            "/",
            get(move || async move {
                airlock::enqueue(log.record(label)).unwrap();
                airlock::enqueue(log.record(format!("{label} 2"))).unwrap();
                (StatusCode::CREATED, "created")
            }),
        )
        .layer(layer)
}

async fn fetch(address: std::net::SocketAddr) -> (u16, String) {
    let response = http_client()
        .get(format!("http://{address}/"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_response_becomes_a_500_and_the_intents_go_to_the_hook() {
    install_hook();
    let log = Log::new();
    let layer = AirlockLayer::new().executor(BrokerDown);
    let address = serve(app(&log, "replaced", layer)).await;
    assert_eq!(fetch(address).await, (500, String::new()));
    let seen = undelivered_with("replaced");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (cause, labels, error) = &seen[0];
    assert_eq!(labels, &["replaced", "replaced 2"]);
    assert!(cause.contains("responded 500"), "{cause}");
    assert!(error.contains("the broker is down"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_response_sends_it_and_the_intents_go_to_the_hook() {
    install_hook();
    let log = Log::new();
    let layer = AirlockLayer::new()
        .executor(BrokerDown)
        .on_flush_failure(FlushFailure::KeepResponse);
    let address = serve(app(&log, "kept", layer)).await;
    assert_eq!(fetch(address).await, (201, "created".to_owned()));
    let seen = undelivered_with("kept");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, ["kept", "kept 2"]);
    assert!(seen[0].0.contains("sent as it was"), "{}", seen[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_flush_that_fails_goes_to_the_hook() {
    install_hook();
    let log = Log::new();
    let layer = AirlockLayer::new()
        .executor(BrokerDown)
        .flush_in_background();
    let address = serve(app(&log, "background", layer)).await;
    assert_eq!(fetch(address).await, (201, "created".to_owned()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while undelivered_with("background").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing reached the hook"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let seen = undelivered_with("background");
    assert_eq!(seen[0].1, ["background", "background 2"]);
    assert!(seen[0].0.contains("background flush"), "{}", seen[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_handler_whose_flush_fails_answers_500_and_hands_over() {
    install_hook();
    let log = Log::new();

    #[airlock::scoped(executor = BrokerDown)]
    async fn handler(log: Log) -> (StatusCode, &'static str) {
        airlock::enqueue(log.record("scoped handler")).unwrap();
        (StatusCode::OK, "fine")
    }

    assert_eq!(
        handler(log.clone()).await,
        (StatusCode::INTERNAL_SERVER_ERROR, "fine")
    );
    assert_eq!(undelivered_with("scoped handler")[0].1, ["scoped handler"]);

    #[airlock::scoped(executor = BrokerDown)]
    async fn response(log: Log) -> axum::response::Response {
        airlock::enqueue(log.record("scoped response")).unwrap();
        axum::response::IntoResponse::into_response((StatusCode::CREATED, "created"))
    }
    assert_eq!(
        response(log.clone()).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        undelivered_with("scoped response")[0].1,
        ["scoped response"]
    );

    #[airlock::scoped(executor = BrokerDown)]
    fn status(log: &Log) -> Result<StatusCode, StatusCode> {
        airlock::enqueue(log.record("scoped status")).unwrap();
        Ok(StatusCode::NO_CONTENT)
    }
    assert_eq!(status(&log), Ok(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(undelivered_with("scoped status")[0].1, ["scoped status"]);
    assert!(log.runs().is_empty(), "the broker took nothing");
}
