//! The response future: the inner future, judged by status, in the
//! request's scope.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::layer::{Config, FlushFailure};
use crate::{Error, Outcome, ScopeFuture, Undelivered};

pin_project! {
    /// The response future of [`Airlock`](super::Airlock): the request's
    /// scope is current whenever it is polled, and ends when the response is
    /// ready. Dropped before that (the client went away, a timeout fired),
    /// it discards.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F: Future> {
        #[pin]
        inner: ScopeFuture<Judge<F>>,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn new(inner: ScopeFuture<Judge<F>>) -> Self {
        ResponseFuture { inner }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let judged = ready!(self.project().inner.poll(cx));
        Poll::Ready(judged.out)
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish()
    }
}

pin_project! {
    /// The inner service's future, its output paired with the configuration
    /// that judges it.
    pub(crate) struct Judge<F> {
        #[pin]
        future: F,
        config: Option<Arc<Config>>,
    }
}

impl<F> Judge<F> {
    pub(crate) fn new(future: F, config: Arc<Config>) -> Self {
        Judge {
            future,
            config: Some(config),
        }
    }
}

impl<F: Future> Future for Judge<F> {
    type Output = Judged<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.future.poll(cx));
        let config = this
            .config
            .take()
            .expect("airlock: Judge polled after completion");
        Poll::Ready(Judged { out, config })
    }
}

/// The inner service's answer, about to decide the scope's fate.
pub(crate) struct Judged<T> {
    out: T,
    config: Arc<Config>,
}

impl<RB: Default, E> Outcome for Judged<Result<Response<RB>, E>> {
    fn is_success(&self) -> bool {
        match &self.out {
            Ok(response) => self.config.is_success(response.status()),
            Err(_) => false,
        }
    }

    fn absorb_flush_error(mut self, error: Error) -> Self {
        let replace = self.config.on_flush_failure == FlushFailure::Respond500;
        if let (true, Ok(response)) = (replace, &mut self.out) {
            *response = internal_server_error();
            hand_to_hook(
                error,
                "flush failed after the HTTP handler succeeded: responded 500",
            );
        } else {
            hand_to_hook(
                error,
                "flush failed after the HTTP handler succeeded: the response was sent as it was",
            );
        }
        self
    }
}

/// An empty `500 Internal Server Error`.
pub(crate) fn internal_server_error<RB: Default>() -> Response<RB> {
    let mut response = Response::new(RB::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Gives what a failed flush did not dispatch to the undelivered hook: no
/// caller of an HTTP service can take it back.
pub(crate) fn hand_to_hook(error: Error, cause: &'static str) {
    let message = chain(&error);
    crate::undelivered(Undelivered::new(error.into_undispatched(), cause).with_error(message));
}

/// The error and its sources, as one line: the hook gets text (the intents
/// leave the error), and the executor's reason is in a source.
fn chain(error: &Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(next) = source {
        message.push_str(": ");
        message.push_str(&next.to_string());
        source = next.source();
    }
    message
}
