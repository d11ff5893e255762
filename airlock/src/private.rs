//! Support for the code `#[airlock::task]` and `#[airlock::scoped]` generate.
//! Not public API: no stability promises.

pub use inventory;
pub use serde;
pub use serde_json;

pub use crate::registry::Registration;

use crate::error::Error;
use crate::scope::Outcome;

/// How a `#[scoped]` function's return value decides its scope's fate, chosen
/// at compile time by autoderef specialization on the return type:
///
/// ```text
/// (&&&&Kind(&out)).__airlock_kind().wrap(out)
/// ```
///
/// - an HTTP response (feature `axum`, `airlock::axum::HttpOutcome`):
///   judged by its status;
/// - an [`Outcome`] (`Result<T, E>` with `E: From<airlock::Error>`): `Ok`
///   flushes, `Err` discards, a flush error becomes the `Err`;
/// - any other `Result`: `Ok` flushes, `Err` discards, a flush error is logged;
/// - anything else: a normal return flushes, a flush error is logged.
pub struct Kind<'a, T>(pub &'a T);

/// Tier 0 (feature `axum`): an HTTP response, judged by its status.
pub trait ViaHttp {
    /// Picks this tier.
    fn __airlock_kind(&self) -> HttpTag {
        HttpTag
    }
}
#[cfg(feature = "axum")]
impl<T: crate::axum::HttpOutcome> ViaHttp for &&&Kind<'_, T> {}

/// Tier 1: the return type is an [`Outcome`].
pub trait ViaOutcome {
    /// Picks this tier.
    fn __airlock_kind(&self) -> OutcomeTag {
        OutcomeTag
    }
}
impl<T: Outcome> ViaOutcome for &&Kind<'_, T> {}

/// Tier 2: a `Result` whose error cannot carry an airlock error.
pub trait ViaResult {
    /// Picks this tier.
    fn __airlock_kind(&self) -> ResultTag {
        ResultTag
    }
}
impl<T, E> ViaResult for &Kind<'_, Result<T, E>> {}

/// Tier 3: any other return type.
pub trait ViaAny {
    /// Picks this tier.
    fn __airlock_kind(&self) -> AnyTag {
        AnyTag
    }
}
impl<T> ViaAny for Kind<'_, T> {}

/// Chosen for an HTTP response (feature `axum`).
pub struct HttpTag;
/// Chosen for an [`Outcome`].
pub struct OutcomeTag;
/// Chosen for another `Result`.
pub struct ResultTag;
/// Chosen for anything else.
pub struct AnyTag;

#[cfg(feature = "axum")]
impl HttpTag {
    /// Wraps the return value.
    pub fn wrap<R: crate::axum::HttpOutcome>(self, out: R) -> Finished<R> {
        Finished {
            success: out.is_success(),
            absorb: R::absorb_flush_error,
            out,
        }
    }
}

impl OutcomeTag {
    /// Wraps the return value.
    pub fn wrap<R: Outcome>(self, out: R) -> Finished<R> {
        Finished {
            success: out.is_success(),
            absorb: R::absorb_flush_error,
            out,
        }
    }
}

impl ResultTag {
    /// Wraps the return value.
    pub fn wrap<T, E>(self, out: Result<T, E>) -> Finished<Result<T, E>> {
        Finished {
            success: out.is_ok(),
            absorb: log_flush_error,
            out,
        }
    }
}

impl AnyTag {
    /// Wraps the return value.
    pub fn wrap<R>(self, out: R) -> Finished<R> {
        Finished {
            success: true,
            absorb: log_flush_error,
            out,
        }
    }
}

/// A `#[scoped]` function's return value with its fate decided.
pub struct Finished<R> {
    out: R,
    success: bool,
    absorb: fn(R, Error) -> R,
}

impl<R> Finished<R> {
    /// The function's return value.
    pub fn into_inner(self) -> R {
        self.out
    }
}

impl<R> Outcome for Finished<R> {
    fn is_success(&self) -> bool {
        self.success
    }

    fn absorb_flush_error(self, error: Error) -> Self {
        Finished {
            out: (self.absorb)(self.out, error),
            ..self
        }
    }
}

fn log_flush_error<R>(out: R, error: Error) -> R {
    let message = error.to_string();
    let lost: Vec<String> = error
        .into_undispatched()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::error!(
        target: "airlock",
        error = %message,
        undispatched = ?lost,
        "flush failed in a #[scoped] function whose return type cannot carry the error \
         (return Result<_, E> with E: From<airlock::Error> to receive it)"
    );
    out
}
