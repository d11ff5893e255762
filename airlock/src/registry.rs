//! The task registry: every `#[airlock::task]` in the binary, by name, so a
//! worker holding only a name and a JSON payload can decode and run it.
//!
//! Tasks register at link time through the `inventory` crate; the name table is
//! built once, on first use.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::intent::Intent;
use crate::task::Task;

/// One registered task: its stable name and where it is defined.
///
/// Made by `#[airlock::task]`; a hand-written [`Task`] registers with
/// `inventory::submit!(Registration::new::<MyTask>(...))`.
pub struct Registration {
    name: &'static str,
    rust_path: &'static str,
    file: &'static str,
    line: u32,
    decode_str: fn(&str) -> serde_json::Result<Intent>,
    decode_value: fn(serde_json::Value) -> serde_json::Result<Intent>,
}

inventory::collect!(Registration);

fn decode_str<T: Task>(json: &str) -> serde_json::Result<Intent> {
    serde_json::from_str::<T>(json).map(Intent::new)
}

fn decode_value<T: Task>(json: serde_json::Value) -> serde_json::Result<Intent> {
    serde_json::from_value::<T>(json).map(Intent::new)
}

impl Registration {
    /// Describes task `T`, defined at `rust_path` (`file`, `line`).
    pub const fn new<T: Task>(rust_path: &'static str, file: &'static str, line: u32) -> Self {
        Registration {
            name: T::NAME,
            rust_path,
            file,
            line,
            decode_str: decode_str::<T>,
            decode_value: decode_value::<T>,
        }
    }

    /// The stable task name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Rust path of the task function, `crate::module::function`.
    pub fn rust_path(&self) -> &'static str {
        self.rust_path
    }

    /// The source file that defines it.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line of the definition.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// Decodes a JSON payload into an intent of this task.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Payload`] with serde's message if the payload does not
    /// match the task's arguments.
    pub fn decode(&self, json: &str) -> Result<Intent, RegistryError> {
        (self.decode_str)(json).map_err(|source| self.payload_error(source))
    }

    /// Decodes an already parsed JSON payload.
    ///
    /// # Errors
    ///
    /// As [`decode`](Registration::decode).
    pub fn decode_value(&self, json: serde_json::Value) -> Result<Intent, RegistryError> {
        (self.decode_value)(json).map_err(|source| self.payload_error(source))
    }

    fn payload_error(&self, source: serde_json::Error) -> RegistryError {
        RegistryError::Payload {
            task: self.name,
            source,
        }
    }

    fn location(&self) -> String {
        format!("`{}` ({}:{})", self.rust_path, self.file, self.line)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("rust_path", &self.rust_path)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish()
    }
}

/// What went wrong finding, decoding or registering a task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two tasks registered the same name.
    #[error(
        "task name `{name}` is registered twice: by {first} and by {second}. Names must be \
         unique: give one of them another with `#[airlock::task(name = \"...\")]`"
    )]
    Duplicate {
        /// The name in question.
        name: &'static str,
        /// One definition (Rust path, file and line).
        first: String,
        /// The other.
        second: String,
    },

    /// No task has this name.
    #[error(
        "no task named `{name}` is registered; known tasks: {known}. Check the name, and that \
         the crate defining the task is linked into this binary",
        known = if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every registered name, sorted.
        known: Vec<&'static str>,
    },

    /// The payload does not match the task's arguments. The task did not run.
    #[error("the payload for task `{task}` does not match its arguments: {source}")]
    Payload {
        /// The task.
        task: &'static str,
        /// serde's message.
        #[source]
        source: serde_json::Error,
    },
}

impl RegistryError {
    pub(crate) fn task(&self) -> Option<&str> {
        match self {
            RegistryError::Duplicate { name, .. } => Some(name),
            RegistryError::Unknown { name, .. } => Some(name),
            RegistryError::Payload { task, .. } => Some(task),
        }
    }
}

struct Table {
    by_name: HashMap<&'static str, &'static Registration>,
    /// The first duplicate found, reported by every lookup.
    duplicate: Option<(&'static Registration, &'static Registration)>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut duplicate = None;
        let mut all: Vec<&'static Registration> = inventory::iter::<Registration>().collect();
        all.sort_by_key(|r| (r.name, r.rust_path, r.file, r.line));
        for registration in all {
            if let Some(first) = by_name.insert(registration.name, registration) {
                duplicate.get_or_insert((first, registration));
            }
        }
        Table { by_name, duplicate }
    })
}

fn duplicate_error(first: &Registration, second: &Registration) -> RegistryError {
    RegistryError::Duplicate {
        name: first.name,
        first: first.location(),
        second: second.location(),
    }
}

/// Checks the registry: call it at start-up (or in a test) so a duplicate
/// name fails fast rather than at the first lookup.
///
/// # Errors
///
/// [`RegistryError::Duplicate`] naming both definitions.
pub fn validate() -> Result<(), RegistryError> {
    match table().duplicate {
        Some((first, second)) => Err(duplicate_error(first, second)),
        None => Ok(()),
    }
}

/// Every registered task, sorted by name.
pub fn tasks() -> Vec<&'static Registration> {
    let mut all: Vec<_> = inventory::iter::<Registration>().collect();
    all.sort_by_key(|r| (r.name, r.rust_path));
    all
}

/// The task with this stable name.
///
/// # Errors
///
/// [`RegistryError::Unknown`] listing the known names, or
/// [`RegistryError::Duplicate`] if the registry is invalid.
pub fn lookup(name: &str) -> Result<&'static Registration, RegistryError> {
    let table = table();
    if let Some((first, second)) = table.duplicate {
        return Err(duplicate_error(first, second));
    }
    table.by_name.get(name).copied().ok_or_else(|| {
        let mut known: Vec<_> = table.by_name.keys().copied().collect();
        known.sort_unstable();
        RegistryError::Unknown {
            name: name.to_owned(),
            known,
        }
    })
}

/// Decodes `json` into an intent of the task named `name`.
///
/// # Errors
///
/// As [`lookup`] and [`Registration::decode`].
pub fn decode(name: &str, json: &str) -> Result<Intent, RegistryError> {
    lookup(name)?.decode(json)
}

/// Runs the task named `name` with a JSON payload, in place: what a worker
/// does with a job. An asynchronous task is driven to completion on this
/// thread as [`Run::wait`](crate::Run::wait) does (use [`run_json_async`]
/// inside an async runtime).
///
/// # Errors
///
/// [`Error::Registry`] if the name is unknown or the payload malformed (the
/// task does not run); [`Error::TaskFailed`] if the task returns an error, or
/// if it is asynchronous and waiting for it here would hang (inside a
/// current-thread tokio runtime, with the `tokio` feature): it is then not
/// started.
pub fn run_json(name: &str, json: &str) -> Result<()> {
    let intent = decode(name, json)?;
    let task = intent.name();
    intent
        .run()
        .wait()
        .map_err(|source| Error::TaskFailed { task, source })
}

/// [`run_json`], awaiting an asynchronous task.
///
/// # Errors
///
/// As [`run_json`].
pub async fn run_json_async(name: &str, json: &str) -> Result<()> {
    let intent = decode(name, json)?;
    let task = intent.name();
    intent
        .run()
        .finish()
        .await
        .map_err(|source| Error::TaskFailed { task, source })
}
