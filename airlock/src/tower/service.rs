//! The service: one scope per request around the inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::{Judge, ResponseFuture};
use super::layer::Config;

/// The middleware [`AirlockLayer`](super::AirlockLayer) wraps a service in.
///
/// Each call opens a scope, calls the inner service in it, and keeps it
/// current whenever the response future is polled; the scope ends with the
/// response. See the [module docs](super).
#[derive(Clone)]
pub struct Airlock<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Airlock<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Airlock { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Airlock<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let config = self.config.clone();
        let inner = &mut self.inner;
        let scope = config.scope.clone();
        ResponseFuture::new(scope.run_async_with(move || Judge::new(inner.call(request), config)))
    }
}

impl<S: fmt::Debug> fmt::Debug for Airlock<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Airlock")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
