//! The layer: the configuration, shared by every request.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use tower_layer::Layer;

use super::background::Background;
use super::service::Airlock;
use crate::{Executor, Policy, Scope, ScopeKind};

/// What a failed flush does to a response that had succeeded.
///
/// Either way, the intents that were not dispatched go to the undelivered
/// hook ([`airlock::undelivered`](crate::undelivered)): the client cannot
/// take them back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushFailure {
    /// Replace the response with an empty `500 Internal Server Error`: the
    /// request did not do all it said it did (the default).
    #[default]
    Respond500,
    /// Send the response as the handler built it.
    KeepResponse,
}

/// A [`tower::Layer`](tower_layer::Layer) that runs each HTTP request in its
/// own airlock scope. See the [module docs](super).
///
/// # Examples
///
/// ```
/// use airlock::tower::{AirlockLayer, FlushFailure};
/// use airlock::{LogOnFlush, TokioExecutor};
///
/// let layer = AirlockLayer::new()
///     .policy(LogOnFlush::new())
///     .executor(TokioExecutor::current())
///     .success_when(|status| status.is_success())
///     .on_flush_failure(FlushFailure::KeepResponse);
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct AirlockLayer {
    scope: Scope,
    kind: Option<Arc<dyn ScopeKind>>,
    background: bool,
    success: Option<Arc<dyn Fn(StatusCode) -> bool + Send + Sync>>,
    on_flush_failure: FlushFailure,
}

/// What each request's future needs, built once by [`AirlockLayer::layer`].
pub(crate) struct Config {
    pub(crate) scope: Scope,
    pub(crate) success: Option<Arc<dyn Fn(StatusCode) -> bool + Send + Sync>>,
    pub(crate) on_flush_failure: FlushFailure,
}

impl Config {
    /// Whether a response with `status` flushes the request's scope.
    pub(crate) fn is_success(&self, status: StatusCode) -> bool {
        match &self.success {
            Some(success) => success(status),
            None => status.as_u16() < 400,
        }
    }
}

impl AirlockLayer {
    /// A layer whose scopes take their policy, executor and kind from the
    /// [defaults](crate::configure), flush on a status below 400, and answer
    /// a failed flush with a 500.
    pub fn new() -> Self {
        AirlockLayer {
            scope: Scope::new(),
            kind: None,
            background: false,
            success: None,
            on_flush_failure: FlushFailure::default(),
        }
    }

    /// Each request's scope uses `policy`: which intents may escape.
    pub fn policy<P: Policy>(mut self, policy: P) -> Self {
        self.scope = self.scope.policy(policy);
        self
    }

    /// Each request's scope uses `executor`: how escaping intents run.
    pub fn executor<E: Executor>(mut self, executor: E) -> Self {
        self.scope = self.scope.executor(executor);
        self
    }

    /// Each request's scope is of kind `kind`: when its intents escape. The
    /// kind's [`should_flush`](ScopeKind::should_flush) is asked with
    /// [`Exit::Success`](crate::Exit::Success) or
    /// [`Exit::Failure`](crate::Exit::Failure) as the success predicate
    /// judged the response.
    pub fn kind<K: ScopeKind>(mut self, kind: K) -> Self {
        self.kind = Some(Arc::new(kind));
        self
    }

    /// Judges responses with `success` instead of "status below 400". An
    /// `Err` from the inner service, a panic and a dropped future are
    /// failures whatever it says.
    pub fn success_when<F>(mut self, success: F) -> Self
    where
        F: Fn(StatusCode) -> bool + Send + Sync + 'static,
    {
        self.success = Some(Arc::new(success));
        self
    }

    /// What a failed flush does to a successful response (default:
    /// [`FlushFailure::Respond500`]).
    pub fn on_flush_failure(mut self, choice: FlushFailure) -> Self {
        self.on_flush_failure = choice;
        self
    }

    /// Sends the response first and dispatches the request's intents
    /// afterwards, in a task spawned on the tokio runtime that ended the
    /// request: for executors with a round trip (a job queue), so the client
    /// does not wait for it. A failed dispatch cannot change the response any
    /// more: its intents go to the undelivered hook in force where the
    /// request ended. With no tokio runtime there, the intents are
    /// dispatched before the response, as without this option.
    ///
    /// A custom [`kind`](AirlockLayer::kind) is still asked first; what its
    /// [`schedule`](ScopeKind::schedule) hands back is what is spawned.
    pub fn flush_in_background(mut self) -> Self {
        self.background = true;
        self
    }

    fn config(&self) -> Config {
        let scope = match (&self.kind, self.background) {
            (kind, true) => self.scope.clone().kind(Background::new(kind.clone())),
            (Some(kind), false) => self.scope.clone().kind(kind.clone()),
            (None, false) => self.scope.clone(),
        };
        Config {
            scope,
            success: self.success.clone(),
            on_flush_failure: self.on_flush_failure,
        }
    }
}

impl Default for AirlockLayer {
    fn default() -> Self {
        AirlockLayer::new()
    }
}

impl<S> Layer<S> for AirlockLayer {
    type Service = Airlock<S>;

    fn layer(&self, inner: S) -> Airlock<S> {
        Airlock::new(inner, Arc::new(self.config()))
    }
}

impl fmt::Debug for AirlockLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AirlockLayer")
            .field("scope", &self.scope)
            .field("kind", &self.kind.as_ref().map(|_| "custom"))
            .field("background", &self.background)
            .field(
                "success",
                &self.success.as_ref().map_or("status < 400", |_| "custom"),
            )
            .field("on_flush_failure", &self.on_flush_failure)
            .finish()
    }
}
