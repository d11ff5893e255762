//! Background flush: respond first, dispatch afterwards.

use std::sync::Arc;

use crate::{Batch, Descendant, Exit, Intent, Release, ScopeKind};

/// A scope kind that hands the flushed batch to a tokio task, after asking
/// the user's kind, if any.
pub(crate) struct Background {
    inner: Option<Arc<dyn ScopeKind>>,
}

impl Background {
    pub(crate) fn new(inner: Option<Arc<dyn ScopeKind>>) -> Self {
        Background { inner }
    }
}

impl ScopeKind for Background {
    fn should_flush(&self, exit: Exit) -> bool {
        match &self.inner {
            Some(kind) => kind.should_flush(exit),
            None => exit == Exit::Success,
        }
    }

    fn before_descendant_flushes(&self, exiting: &Descendant<'_>, intents: &[Intent]) -> Release {
        match &self.inner {
            Some(kind) => kind.before_descendant_flushes(exiting, intents),
            None => Release::None,
        }
    }

    fn schedule(&self, batch: Batch) -> Option<Batch> {
        let batch = match &self.inner {
            Some(kind) => kind.schedule(batch)?,
            None => batch,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Some(batch);
        };
        // The hook in force where the request ended, not on whichever thread
        // runs the task.
        let defaults = crate::defaults();
        runtime.spawn(crate::with_defaults_async(defaults, async move {
            if let Err(error) = batch.dispatch_async().await {
                super::future::hand_to_hook(
                    error,
                    "background flush after the HTTP response failed",
                );
            }
        }));
        None
    }
}
