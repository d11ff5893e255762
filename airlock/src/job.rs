//! The job boundary shared by the worker runners: one job, run by task name
//! through the registry, inside its own scope.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::{BoxError, Error, Executor, Intent, PortablePolicy, Scope, registry};

/// Runs `intent` as a job in a fresh scope with `policy` (a portable policy
/// that travelled with the job) and `executor` (where what the job enqueues
/// goes; the defaults' executor when `None`). What the task enqueues escapes
/// only if it succeeds. An error is a failure the engine may retry: the
/// task failed or panicked, or what it enqueued could not be dispatched.
pub(crate) async fn run_intent(
    intent: Intent,
    policy: Option<PortablePolicy>,
    executor: Option<&Arc<dyn Executor>>,
) -> Result<(), BoxError> {
    let name = intent.name();
    let mut scope = Scope::new();
    if let Some(policy) = policy {
        scope = scope.policy(policy);
    }
    if let Some(executor) = executor {
        scope = scope.executor(executor.clone());
    }
    let body = scope.run_async(async move {
        intent
            .run()
            .finish()
            .await
            .map_err(|source| Error::TaskFailed { task: name, source })
    });
    match (CatchUnwind { inner: body }).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Box::new(error)),
        Err(panic) => {
            let message = format!("task `{name}` panicked: {}", panic_message(&*panic));
            Err(Box::new(Message(message)))
        }
    }
}

/// An error that is only a message.
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// `error` and its sources, `: `-separated, as one line for a job's record
/// (engines keep only a string). A source whose text the message already
/// holds is not repeated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = next.source();
    }
    line
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<a non-string panic payload>")
}

pin_project_lite::pin_project! {
    /// Turns a panic while polling `inner` into an `Err` (the scope inside
    /// has already discarded its intents by then, rule 3).
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Which registered tasks a worker handles, checked at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    /// The registered tasks this worker runs.
    pub handled: Vec<&'static str>,
    /// Registered tasks no worker of this process handles: jobs for them
    /// wait for another binary, or fail here as unhandled.
    pub unhandled: Vec<&'static str>,
    /// Names this worker was told to handle that no task registers.
    pub unknown: Vec<String>,
}

/// Checks the registry (no duplicated name) and splits the registered tasks
/// into those `only` lists (every one when `None`) and the rest, logging the
/// rest at `WARN`.
pub(crate) fn startup(only: Option<&[String]>) -> Result<Startup, registry::RegistryError> {
    registry::validate()?;
    let mut report = Startup::default();
    for registration in registry::tasks() {
        let name = registration.name();
        if only.is_none_or(|only| only.iter().any(|n| n == name)) {
            report.handled.push(name);
        } else {
            report.unhandled.push(name);
        }
    }
    if let Some(only) = only {
        report.unknown = only
            .iter()
            .filter(|name| !report.handled.contains(&name.as_str()))
            .cloned()
            .collect();
    }
    if !report.unhandled.is_empty() {
        tracing::warn!(
            target: "airlock",
            unhandled = ?report.unhandled,
            "registered tasks that this worker does not handle"
        );
    }
    if !report.unknown.is_empty() {
        tracing::warn!(
            target: "airlock",
            unknown = ?report.unknown,
            "the worker was told to handle tasks that no crate in this binary registers"
        );
    }
    Ok(report)
}

/// Ctrl-C, or `SIGTERM` on Unix.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
