//! A dry run that shows what it held back.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::intent::Intent;
use crate::policy::Policy;

/// Drops every intent at flush, as [`DropAll`](crate::DropAll) does, and
/// keeps a copy of each so the program can say what would have been
/// dispatched: the `--dry-run` flag of a command-line program.
///
/// Clones share one record: give the scope a clone and keep the original to
/// read from. It records exactly what would have reached the executor: the
/// intents that every other policy on their path allowed, in flush order.
///
/// # Examples
///
/// ```
/// use airlock::{DryRun, Scope};
/// # use airlock::{Run, Task};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Refund { order: u64 }
/// # impl Task for Refund { const NAME: &'static str = "refund"; fn run(self) -> Run { panic!("dry run") } }
///
/// let dry_run = DryRun::new();
/// Scope::new().policy(dry_run.clone()).run(|| airlock::enqueue(Refund { order: 7 }))?;
/// for intent in dry_run.take() {
///     println!("would dispatch {intent}"); // would dispatch refund(order: 7)
/// }
/// # assert!(dry_run.take().is_empty());
/// # Ok::<(), airlock::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct DryRun {
    held: Arc<Mutex<Vec<Intent>>>,
}

impl DryRun {
    /// A dry run with nothing recorded yet.
    pub fn new() -> Self {
        DryRun::default()
    }

    /// Takes what was held back so far, in flush order, leaving the record
    /// empty.
    pub fn take(&self) -> Vec<Intent> {
        std::mem::take(&mut *self.lock())
    }

    /// How many intents are recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Intent>> {
        // A panic while recording leaves a valid `Vec` behind.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Policy for DryRun {
    fn name(&self) -> &'static str {
        "DryRun"
    }

    fn allows(&self, intent: &Intent) -> bool {
        self.lock().push(intent.clone());
        false
    }

    fn checks_enqueue(&self) -> bool {
        false
    }
}

impl fmt::Debug for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DryRun").field("held", &self.len()).finish()
    }
}
