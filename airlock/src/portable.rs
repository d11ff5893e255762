//! Portable policies: the built-in policies in a serializable form that can
//! travel with a job to the worker that runs it.
//!
//! A scope that enqueues into a job queue often means its policy for the
//! jobs' own effects too: "reprocess these orders without emailing anyone"
//! should also hold for the emails those jobs would enqueue on a worker. A
//! [`PortablePolicy`] is a policy (use it like any other) that a queue
//! executor can also serialize next to the job; the worker reinstates it as
//! the policy of the job's scope, where it judges what the job enqueues and
//! travels on with the follow-ups.
//!
//! It is opt-in per scope: only a `PortablePolicy` travels. The built-in
//! policies themselves stay local (`BlockTasks` on a scope does not follow
//! its jobs); convert one with `PortablePolicy::from` to make it travel.
//!
//! # How an executor learns them
//!
//! [`Policy::portable`] answers the question for any policy (`None` unless it
//! is, or contains, a `PortablePolicy`). At flush, a scope whose own policy is
//! portable attaches it to each intent it lets through, so every policy that
//! should travel with an intent is among [`Intent::policies`], and
//! [`portable_policy_of`] gathers them into one.
//!
//! # Examples
//!
//! ```
//! use airlock::{BlockTasks, Dispatch, Executor, Intents, PortablePolicy, Scope};
//! # use airlock::{Run, Task};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] struct Reprocess { order: u64 }
//! # impl Task for Reprocess { const NAME: &'static str = "reprocess"; fn run(self) -> Run { Run::ok() } }
//! use std::sync::{Arc, Mutex};
//!
//! // A stand-in for a queue executor: it records what would travel with each job.
//! #[derive(Clone, Default)]
//! struct Recorder(Arc<Mutex<Vec<Option<PortablePolicy>>>>);
//! impl Executor for Recorder {
//!     fn dispatch(&self, intents: Intents) -> Dispatch {
//!         let mut seen = self.0.lock().unwrap();
//!         seen.extend(intents.into_vec().iter().map(airlock::portable_policy_of));
//!         Dispatch::Done(Ok(()))
//!     }
//! }
//!
//! let executor = Recorder::default();
//! let no_email = PortablePolicy::from(BlockTasks::names(["send_email"]));
//! Scope::new()
//!     .policy(no_email.clone())
//!     .executor(executor.clone())
//!     .run(|| airlock::enqueue(Reprocess { order: 7 }))?;
//! assert_eq!(*executor.0.lock().unwrap(), [Some(no_email)]);
//! assert_eq!(
//!     serde_json::to_string(&PortablePolicy::block_tasks(["send_email"]))?,
//!     r#"{"block_tasks":{"names":["send_email"]}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::intent::Intent;
use crate::policy::{AssertNoEffects, BlockTasks, DropAll, Policy, Violation};

/// A built-in policy in a form that serializes, so it can travel with a job.
///
/// Behaves exactly as the policy it stands for. The JSON form is small and
/// stable: `"drop_all"`, `"assert_no_effects"`,
/// `{"block_tasks":{"names":[...]}}` (with `"reject":true` when
/// [`BlockTasks::reject_at_enqueue`] was set), `{"all":[...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PortablePolicy {
    /// As [`DropAll`].
    DropAll,
    /// As [`AssertNoEffects`].
    AssertNoEffects,
    /// As [`BlockTasks`], by stable name.
    BlockTasks {
        /// The blocked task names.
        names: Vec<String>,
        /// Reject at enqueue instead of dropping at flush.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reject: bool,
    },
    /// Every member must allow an intent.
    All(Vec<PortablePolicy>),
}

impl PortablePolicy {
    /// [`BlockTasks::names`], portable.
    pub fn block_tasks<I>(names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        PortablePolicy::BlockTasks {
            names: names.into_iter().map(Into::into).collect(),
            reject: false,
        }
    }

    /// Combines several portable policies into one; `None` when there are
    /// none, the policy itself when there is one, duplicates removed.
    pub fn combine(policies: impl IntoIterator<Item = PortablePolicy>) -> Option<PortablePolicy> {
        let mut all: Vec<PortablePolicy> = Vec::new();
        for policy in policies {
            let members = match policy {
                PortablePolicy::All(members) => members,
                one => vec![one],
            };
            for member in members {
                if !all.contains(&member) {
                    all.push(member);
                }
            }
        }
        match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(PortablePolicy::All(all)),
        }
    }

    fn as_policy(&self) -> Option<&dyn Policy> {
        match self {
            PortablePolicy::DropAll => Some(&DropAll),
            PortablePolicy::AssertNoEffects => Some(&AssertNoEffects),
            _ => None,
        }
    }
}

impl From<DropAll> for PortablePolicy {
    fn from(_: DropAll) -> Self {
        PortablePolicy::DropAll
    }
}

impl From<AssertNoEffects> for PortablePolicy {
    fn from(_: AssertNoEffects) -> Self {
        PortablePolicy::AssertNoEffects
    }
}

impl From<BlockTasks> for PortablePolicy {
    fn from(blocked: BlockTasks) -> Self {
        PortablePolicy::BlockTasks {
            names: blocked.blocked_names().map(str::to_owned).collect(),
            reject: blocked.rejects(),
        }
    }
}

impl Policy for PortablePolicy {
    fn name(&self) -> &'static str {
        match self {
            PortablePolicy::DropAll => "DropAll",
            PortablePolicy::AssertNoEffects => "AssertNoEffects",
            PortablePolicy::BlockTasks { .. } => "BlockTasks",
            PortablePolicy::All(_) => "policy list",
        }
    }

    fn on_enqueue(&self, intent: &Intent) -> Result<(), Violation> {
        self.rejected_by(intent).map_err(|(_, violation)| violation)
    }

    fn allows(&self, intent: &Intent) -> bool {
        self.dropped_by(intent).is_none()
    }

    fn dropped_by(&self, intent: &Intent) -> Option<&'static str> {
        match self {
            PortablePolicy::BlockTasks { names, .. } => names
                .iter()
                .any(|name| name == intent.name())
                .then_some("BlockTasks"),
            PortablePolicy::All(members) => members.iter().find_map(|p| p.dropped_by(intent)),
            builtin => builtin.as_policy().and_then(|p| p.dropped_by(intent)),
        }
    }

    fn rejected_by(&self, intent: &Intent) -> Result<(), (&'static str, Violation)> {
        match self {
            PortablePolicy::BlockTasks {
                names,
                reject: true,
            } if names.iter().any(|name| name == intent.name()) => Err((
                "BlockTasks",
                Violation::new(format!(
                    "`{}` is blocked here (a policy that travelled with this job); \
                     do not enqueue it",
                    intent.name()
                )),
            )),
            PortablePolicy::BlockTasks { .. } => Ok(()),
            PortablePolicy::All(members) => members.iter().try_for_each(|p| p.rejected_by(intent)),
            builtin => builtin
                .as_policy()
                .map_or(Ok(()), |p| p.rejected_by(intent)),
        }
    }

    fn portable(&self) -> Option<PortablePolicy> {
        Some(self.clone())
    }
}

/// Every portable policy that judges `intent` besides the flushing scope's
/// own, combined: what a queue executor sends along with the job. See the
/// [module docs](crate::portable) for how a scope's policy gets there.
pub fn portable_policy_of(intent: &Intent) -> Option<PortablePolicy> {
    PortablePolicy::combine(intent.policies().filter_map(Policy::portable))
}
