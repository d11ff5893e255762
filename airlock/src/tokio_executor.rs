//! `TokioExecutor`: escaping intents as tokio tasks (feature `tokio`).

use crate::executor::{Dispatch, DispatchFailure, Executor, Intents};
use crate::intent::Intent;
use tokio::runtime::Handle;

/// Runs each escaping intent as its own tokio task: async tasks with
/// `spawn`, synchronous ones with `spawn_blocking` so they cannot stall the
/// runtime's workers.
///
/// Dispatch means "spawned": the flush does not wait for the tasks, and a
/// task that fails is logged through `tracing` (target `airlock`, `ERROR`)
/// with its name and error. Flushing with no runtime to spawn on fails and
/// hands back every intent.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> airlock::Result<()> {
/// use airlock::{Scope, TokioExecutor};
///
/// Scope::new()
///     .executor(TokioExecutor::current())
///     .run_async(async { Ok::<_, airlock::Error>(()) })
///     .await
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct TokioExecutor {
    handle: Option<Handle>,
}

impl TokioExecutor {
    /// Spawns on the runtime the flush runs in.
    pub fn current() -> Self {
        TokioExecutor { handle: None }
    }

    /// Spawns on the given runtime, wherever the flush runs.
    pub fn new(handle: Handle) -> Self {
        TokioExecutor {
            handle: Some(handle),
        }
    }
}

impl Executor for TokioExecutor {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        let intents = intents.into_vec();
        let handle = match self.handle.clone().map_or_else(Handle::try_current, Ok) {
            Ok(handle) => handle,
            Err(error) => {
                let mut intents = intents.into_iter();
                let first = intents.next();
                return Dispatch::Done(Err(DispatchFailure {
                    dispatched: 0,
                    failed_task: first.as_ref().map_or("?", Intent::name),
                    failed: first,
                    error: format!(
                        "TokioExecutor found no tokio runtime ({error}): flush inside a \
                         runtime or build it with TokioExecutor::new(handle)"
                    )
                    .into(),
                    not_attempted: intents.collect(),
                }));
            }
        };
        for intent in intents {
            let task = intent.name();
            let report = move |result: Result<(), crate::BoxError>| {
                if let Err(error) = result {
                    tracing::error!(target: "airlock", task, %error, "task failed");
                }
            };
            if intent.is_async() {
                handle.spawn(async move { report(intent.run().finish().await) });
            } else {
                handle.spawn_blocking(move || report(intent.run().wait()));
            }
        }
        Dispatch::Done(Ok(()))
    }
}
