//! Tasks and helpers shared by the behaviour tests.
//!
//! Tests in one binary run in parallel, so every recording task writes into a
//! log named by the test ([`Log::new`]) rather than into one global counter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use airlock::{BoxError, Run, Task};
use serde::{Deserialize, Serialize};

fn logs() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static LOGS: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

fn write(log: &str, entry: String) {
    logs()
        .lock()
        .unwrap()
        .entry(log.to_owned())
        .or_default()
        .push(entry);
}

/// A log that tasks record their runs into, unique to the test that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log(String);

impl Log {
    /// A fresh, empty log.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Log(format!("log-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// The labels recorded so far, in run order.
    pub fn runs(&self) -> Vec<String> {
        logs()
            .lock()
            .unwrap()
            .get(&self.0)
            .cloned()
            .unwrap_or_default()
    }

    /// A task that records `label` here when it runs.
    pub fn record(&self, label: impl Into<String>) -> Record {
        Record {
            log: self.0.clone(),
            label: label.into(),
        }
    }

    /// A task that records `label` here, then fails.
    pub fn fail(&self, label: impl Into<String>) -> Fail {
        Fail {
            log: self.0.clone(),
            label: label.into(),
        }
    }

    /// An asynchronous task that yields once, then records `label` here.
    pub fn record_async(&self, label: impl Into<String>) -> RecordAsync {
        RecordAsync {
            log: self.0.clone(),
            label: label.into(),
        }
    }

    /// Another task type (for `BlockTasks`), recording `label` here.
    pub fn other(&self, label: impl Into<String>) -> Other {
        Other {
            log: self.0.clone(),
            label: label.into(),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log::new()
    }
}

/// Records its label when it runs. Name: `record`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The log to record into.
    pub log: String,
    /// What to record.
    pub label: String,
}

impl Task for Record {
    const NAME: &'static str = "record";

    fn run(self) -> Run {
        write(&self.log, self.label);
        Run::ok()
    }
}

/// Records its label, then fails with `failed: <label>`. Name: `fail`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fail {
    /// The log to record into.
    pub log: String,
    /// What to record.
    pub label: String,
}

impl Task for Fail {
    const NAME: &'static str = "fail";

    fn run(self) -> Run {
        let error: BoxError = format!("failed: {}", self.label).into();
        write(&self.log, self.label);
        Run::Done(Err(error))
    }
}

/// Yields once, then records its label. Name: `record_async`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAsync {
    /// The log to record into.
    pub log: String,
    /// What to record.
    pub label: String,
}

impl Task for RecordAsync {
    const NAME: &'static str = "record_async";
    const IS_ASYNC: bool = true;

    fn run(self) -> Run {
        Run::pending(async move {
            YieldOnce(false).await;
            write(&self.log, self.label);
        })
    }
}

/// Records its label when it runs. Name: `other`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Other {
    /// The log to record into.
    pub log: String,
    /// What to record.
    pub label: String,
}

impl Task for Other {
    const NAME: &'static str = "other";

    fn run(self) -> Run {
        write(&self.log, self.label);
        Run::ok()
    }
}

/// A task with no arguments that does nothing. Name: `noop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";

    fn run(self) -> Run {
        Run::ok()
    }
}

/// A future that is pending once (waking itself), then ready: forces a task
/// switch point without a runtime-specific timer.
#[derive(Debug)]
pub struct YieldOnce(pub bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The labels of the `Record` and `Other` payloads among `intents`, in order;
/// any other task shows as `<name>`.
pub fn labels(intents: &[airlock::Intent]) -> Vec<String> {
    intents
        .iter()
        .map(
            |intent| match (intent.payload::<Record>(), intent.payload::<Other>()) {
                (Some(record), _) => record.label.clone(),
                (_, Some(other)) => other.label.clone(),
                _ => format!("<{}>", intent.name()),
            },
        )
        .collect()
}

/// A shared list of what policy hooks saw, in call order.
pub type Calls = std::sync::Arc<Mutex<Vec<String>>>;

/// What the hooks recorded so far.
pub fn seen(calls: &Calls) -> Vec<String> {
    calls.lock().unwrap().clone()
}

/// A policy that allows everything and records each hook call into `calls`
/// as `hook:name` (or `hook:name:task` with [`Tag::naming_tasks`]).
#[derive(Debug)]
pub struct Tag {
    name: &'static str,
    calls: Calls,
    with_task: bool,
}

impl Tag {
    /// Records `enqueue:name` and `allows:name`.
    pub fn new(name: &'static str, calls: &Calls) -> Self {
        Tag {
            name,
            calls: calls.clone(),
            with_task: false,
        }
    }

    /// Records `enqueue:name:task` and `allows:name:task`.
    pub fn naming_tasks(name: &'static str, calls: &Calls) -> Self {
        Tag {
            with_task: true,
            ..Tag::new(name, calls)
        }
    }

    fn record(&self, hook: &str, intent: &airlock::Intent) {
        let entry = if self.with_task {
            format!("{hook}:{}:{}", self.name, intent.name())
        } else {
            format!("{hook}:{}", self.name)
        };
        self.calls.lock().unwrap().push(entry);
    }
}

impl airlock::Policy for Tag {
    fn on_enqueue(&self, intent: &airlock::Intent) -> Result<(), airlock::Violation> {
        self.record("enqueue", intent);
        Ok(())
    }

    fn allows(&self, intent: &airlock::Intent) -> bool {
        self.record("allows", intent);
        true
    }

    fn name(&self) -> &'static str {
        self.name
    }
}

/// Real services for the integration tests: where they are, and a clear
/// failure when they are not there.
pub mod services {
    use std::net::{TcpStream, ToSocketAddrs};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Whether `AIRLOCK_SKIP_SERVICES=1` asks to skip the tests that need
    /// services.
    pub fn skipped() -> bool {
        std::env::var("AIRLOCK_SKIP_SERVICES").is_ok_and(|v| v == "1")
    }

    /// `AIRLOCK_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`), checked to
    /// be reachable; `None` when services are skipped.
    ///
    /// # Panics
    ///
    /// When Redis does not answer, with what to do about it.
    pub fn redis_url() -> Option<String> {
        if skipped() {
            eprintln!("AIRLOCK_SKIP_SERVICES=1: skipping a test that needs Redis");
            return None;
        }
        let url = std::env::var("AIRLOCK_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        if let Err(error) = reachable(&url, 6379) {
            panic!(
                "Redis is not reachable at {url} ({error}). Start it (`redis-server \
                 --daemonize yes`, or `docker run -p 6379:6379 redis:7`), point \
                 AIRLOCK_TEST_REDIS_URL at one, or set AIRLOCK_SKIP_SERVICES=1 to skip"
            );
        }
        Some(url)
    }

    /// `AIRLOCK_TEST_POSTGRES_URL` (default
    /// `postgres://postgres@127.0.0.1:5432/test`), checked to be reachable;
    /// `None` when services are skipped.
    ///
    /// # Panics
    ///
    /// When Postgres does not answer, with what to do about it.
    pub fn postgres_url() -> Option<String> {
        if skipped() {
            eprintln!("AIRLOCK_SKIP_SERVICES=1: skipping a test that needs Postgres");
            return None;
        }
        let url = std::env::var("AIRLOCK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        if let Err(error) = reachable(&url, 5432) {
            panic!(
                "Postgres is not reachable at {url} ({error}). Start it (`pg_ctlcluster 15 main \
                 start`, or `docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust \
                 postgres:15`), point AIRLOCK_TEST_POSTGRES_URL at one, or set \
                 AIRLOCK_SKIP_SERVICES=1 to skip"
            );
        }
        Some(url)
    }

    /// Connects a TCP socket to the host and port of `url`.
    fn reachable(url: &str, default_port: u16) -> std::io::Result<()> {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host_port = host_port.split(['/', '?']).next().unwrap_or(host_port);
        let address = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        };
        let address = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the host has no address"))?;
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).map(drop)
    }

    /// A name unique to this test run (process, time, counter): a key prefix,
    /// a queue, a schema.
    pub fn unique(what: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!(
            "airlock_test_{what}_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Serves `app` on `127.0.0.1:0` in a spawned task and returns its address:
/// a real server for the HTTP tests.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("axum::serve");
    });
    address
}

/// An HTTP client that reports redirects instead of following them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build an HTTP client")
}

/// Waits until `log` holds `count` runs, failing the test after 10 s.
pub async fn wait_for_runs(log: &Log, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let runs = log.runs();
        if runs.len() >= count {
            return runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 10 s for {count} run(s), saw {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// What one call of the undelivered hook received: its cause, the labels of
/// its intents (as [`labels`] names them) and its error's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    /// [`airlock::Undelivered::cause`].
    pub cause: String,
    /// The intents' labels, in order.
    pub labels: Vec<String>,
    /// The error's message, where there was one.
    pub error: Option<String>,
}

/// An undelivered hook that records what it receives, for
/// [`airlock::with_defaults`]: every test gets its own.
#[derive(Clone, Debug, Default)]
pub struct LostSink(std::sync::Arc<Mutex<Vec<Lost>>>);

impl LostSink {
    /// An empty sink.
    pub fn new() -> Self {
        LostSink::default()
    }

    /// Defaults whose undelivered hook records into this sink.
    pub fn defaults(&self) -> airlock::Defaults {
        let sink = self.0.clone();
        airlock::Defaults::new().on_undelivered(move |lost: airlock::Undelivered| {
            let entry = Lost {
                cause: lost.cause().to_owned(),
                labels: labels(lost.intents()),
                error: lost.error().map(ToString::to_string),
            };
            sink.lock().unwrap().push(entry);
        })
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Lost> {
        self.0.lock().unwrap().clone()
    }

    /// The labels of every intent received so far, in order of arrival.
    pub fn labels(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .flat_map(|lost| lost.labels)
            .collect()
    }
}

/// Polls `future` once (with a waker that does nothing), then drops it if it
/// is not ready: cancels it at its first await, deterministically, with no
/// runtime.
pub fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    poll_times(future, 1)
}

/// Polls `future` up to `times` times, then drops it if it is still not
/// ready.
pub fn poll_times<F: std::future::Future>(future: F, times: usize) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..times {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// The environment variable that tells a test binary which test runs as a
/// child process ([`run_in_child`]).
pub const CHILD_ENV: &str = "AIRLOCK_TEST_CHILD";

/// Whether this process is the child that [`run_in_child`] started for `test`.
/// A child test returns at once unless this holds.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|name| name == test)
}

/// Runs the test `test` of this test binary in a child process and waits at
/// most `limit` for it: for tests that would abort the process or change
/// process-wide state (`airlock::configure`) if they went wrong. Panics,
/// with the child's output, if it fails, aborts or hangs (it is killed then).
pub fn run_in_child(test: &str, limit: std::time::Duration) {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, test)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test process");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child test") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("read the child's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match status {
        Some(status) if status.success() && stdout.contains("1 passed") => {}
        Some(status) => panic!(
            "child test `{test}` failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
        None => panic!(
            "child test `{test}` did not finish within {limit:?} (a hang or deadlock): \
             killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}

/// The labels of `sqlx_db` effects among `intents`, in order.
#[cfg(feature = "sqlx")]
pub fn labels_of(intents: &[airlock::Intent]) -> Vec<String> {
    intents
        .iter()
        .filter_map(|intent| intent.payload::<sqlx_db::Effect>())
        .map(|effect| effect.label.clone())
        .collect()
}

#[cfg(feature = "sqlx")]
#[path = "support/sqlx_db.rs"]
pub mod sqlx_db;

/// The dispatch error inside `error`; panics, naming what it got, if it is
/// another error.
pub fn dispatch_error(error: airlock::Error) -> Box<airlock::DispatchError> {
    match error {
        airlock::Error::Dispatch(dispatch) => dispatch,
        other => panic!("expected a dispatch error, got {other:?}"),
    }
}

/// An error and its sources on one line, as `anyhow`'s `{:#}` prints them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}
