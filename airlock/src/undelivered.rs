//! The undelivered hook: where intents go when no caller can take them back
//! (rule 7).
//!
//! Every intent that [`enqueue`](crate::enqueue) accepted ends in exactly one
//! of four ways: dispatched, dropped by a policy (and reported), discarded
//! with its scope (and reported), or handed back to a caller in an error
//! ([`Error::into_undispatched`](crate::Error::into_undispatched)). Some paths
//! have no caller to hand intents back to: a dispatch cancelled half way, a
//! task or executor that panics mid-batch, a deferred [`Batch`](crate::Batch)
//! dropped unused, a task that fails after `TokioExecutor` spawned it, a
//! background flush after an HTTP response was sent. Those intents go to one
//! process-wide hook, set with [`Defaults::on_undelivered`]. The default hook
//! logs each intent at `ERROR` (target `airlock`) with its task name and JSON
//! payload, so it can be replayed by hand.

use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::config::Defaults;
use crate::intent::Intent;
use crate::task::BoxError;

/// The hook's type: see [`Defaults::on_undelivered`].
pub(crate) type Hook = Arc<dyn Fn(Undelivered) + Send + Sync>;

/// Intents that no caller could receive, on their way to the undelivered
/// hook.
///
/// # Examples
///
/// An integration that lost its caller hands what it holds to the hook:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use airlock::{Defaults, Intent, Undelivered};
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
/// # impl Task for Ping { const NAME: &'static str = "ping"; fn run(self) -> Run { Run::ok() } }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let defaults = Defaults::new().on_undelivered(move |lost: Undelivered| {
///     sink.lock().unwrap().push((lost.cause().to_owned(), lost.len()));
/// });
/// airlock::with_defaults(defaults, || {
///     airlock::undelivered(Undelivered::new(vec![Intent::new(Ping)], "the worker shut down"));
/// });
/// assert_eq!(*seen.lock().unwrap(), [("the worker shut down".to_owned(), 1)]);
/// ```
pub struct Undelivered {
    intents: Vec<Intent>,
    cause: Cow<'static, str>,
    error: Option<BoxError>,
}

impl Undelivered {
    /// `intents` that could not be delivered, and what happened, in a few
    /// words ("the dispatch was cancelled").
    pub fn new(intents: Vec<Intent>, cause: impl Into<Cow<'static, str>>) -> Self {
        Undelivered {
            intents,
            cause: cause.into(),
            error: None,
        }
    }

    /// Adds the error that stopped delivery.
    pub fn with_error(mut self, error: impl Into<BoxError>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// The intents, in the order they were enqueued.
    pub fn intents(&self) -> &[Intent] {
        &self.intents
    }

    /// Takes the intents, to persist or retry them.
    pub fn into_intents(self) -> Vec<Intent> {
        self.intents
    }

    /// How many intents there are.
    pub fn len(&self) -> usize {
        self.intents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }

    /// What happened, in a few words.
    pub fn cause(&self) -> &str {
        &self.cause
    }

    /// The error that stopped delivery, where there was one.
    pub fn error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.error.as_deref()
    }
}

impl fmt::Debug for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undelivered")
            .field("cause", &self.cause)
            .field("error", &self.error.as_ref().map(ToString::to_string))
            .field("intents", &self.intents)
            .finish()
    }
}

/// Hands intents that no caller can receive to the undelivered hook in force
/// here (a [`with_defaults`](crate::with_defaults) override, else the
/// process-wide defaults). Does nothing when there are none.
///
/// For integrations and executors that lose their caller: an intent must
/// never be dropped without a trace. A hook that panics is caught and logged;
/// this function never panics, so it is safe to call from `Drop`.
pub fn undelivered(undelivered: Undelivered) {
    if undelivered.is_empty() {
        return;
    }
    let hook = crate::context::try_with_defaults_ref(Defaults::undelivered_hook).flatten();
    deliver_to(hook.as_ref(), undelivered);
}

/// Calls `hook` (the default one when `None`), containing a panic.
pub(crate) fn deliver_to(hook: Option<&Hook>, undelivered: Undelivered) {
    let outcome = match hook {
        Some(hook) => catch_unwind(AssertUnwindSafe(|| hook(undelivered))),
        None => catch_unwind(AssertUnwindSafe(|| log(&undelivered))),
    };
    if outcome.is_err() {
        tracing::error!(
            target: "airlock",
            "the undelivered hook panicked: the intents it was given are lost"
        );
    }
}

/// The default hook: one `ERROR` event per intent, with its JSON payload.
fn log(undelivered: &Undelivered) {
    let error = undelivered.error.as_ref().map(ToString::to_string);
    for intent in &undelivered.intents {
        // The payload's `Serialize` is user code: a panic there must not
        // take the rest of the report with it.
        let payload = catch_unwind(AssertUnwindSafe(|| intent.to_json()))
            .map_err(|_| "<its Serialize panicked>".to_owned())
            .and_then(|json| json.map_err(|error| format!("<unserializable: {error}>")))
            .map_or_else(|text| text, |json| json.to_string());
        tracing::error!(
            target: "airlock",
            task = intent.name(),
            payload = %payload,
            cause = %undelivered.cause,
            error = error.as_deref(),
            "undelivered intent: replay it from this payload"
        );
    }
}
