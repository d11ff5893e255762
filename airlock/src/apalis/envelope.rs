//! The job format: one envelope per intent, so one worker can consume every
//! task of a queue.

use serde::{Deserialize, Serialize};

use crate::{DispatchOptions, Intent, PortablePolicy};

/// What [`RedisExecutor`](super::RedisExecutor) stores as an apalis job's
/// arguments (JSON), and what [`Worker`](super::Worker) reads back:
///
/// ```json
/// {"task": "send_email", "payload": {"order_id": 7}, "options": {"max_attempts": 5}}
/// ```
///
/// - `task`: the task's stable name ([`Task::NAME`](crate::Task::NAME));
/// - `payload`: its arguments, as the task serializes them;
/// - `options`: the intent's [`DispatchOptions`] (omitted when empty), so
///   the worker knows `max_attempts`;
/// - `policy`: a [`PortablePolicy`] that travelled with the intent, when
///   there is one; the worker reinstates it in the job's scope.
///
/// Another producer (a script, another language) enqueues an airlock job by
/// writing this shape into the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The task's stable name.
    pub task: String,
    /// The task's arguments.
    pub payload: serde_json::Value,
    /// How the intent asked to be dispatched.
    #[serde(default, skip_serializing_if = "is_default")]
    pub options: DispatchOptions,
    /// The portable policy the job runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PortablePolicy>,
}

fn is_default(options: &DispatchOptions) -> bool {
    *options == DispatchOptions::default()
}

impl Envelope {
    /// The envelope for `intent`: its name, JSON payload, effective options
    /// and the portable policies that travel with it.
    ///
    /// # Errors
    ///
    /// The payload's `Serialize` failed.
    pub fn of(intent: &Intent) -> serde_json::Result<Self> {
        Ok(Envelope {
            task: intent.name().to_owned(),
            payload: intent.to_json()?,
            options: intent.options().into_owned(),
            policy: crate::portable_policy_of(intent),
        })
    }
}
