//! The task registry: every `#[airlock::task]` in the binary, by name, so a
//! worker holding only a name and a JSON payload can decode and run it.
//!
//! Tasks register at link time through the `inventory` crate; the name table is
//! built once, on first use.
//!
//! # A worker must link the crate that defines the tasks
//!
//! The registry holds the tasks of the crates linked into the binary, and the
//! linker leaves out a crate that the binary never names. A worker that only
//! receives names and payloads uses nothing from the crate defining the tasks,
//! so it sees an empty registry (or one missing those tasks) unless it names
//! that crate:
//!
//! ```text
//! use my_tasks as _; // links `my_tasks`, and with it its #[airlock::task]s
//!
//! fn main() -> Result<(), airlock::RegistryError> {
//!     airlock::registry::validate()?; // fails fast: no tasks, or a duplicate name
//!     // ... receive (name, payload) pairs and call registry::run_json ...
//!     Ok(())
//! }
//! ```
//!
//! Call [`validate`] at a worker's start-up: it fails when no task is
//! registered at all, and when two tasks claim one name, naming both Rust
//! paths. A duplicate name affects only lookups of that name; every other
//! task can still be found.
//!
//! # Examples
//!
//! ```
//! /// Charges a card.
//! #[airlock::task(name = "billing.charge")]
//! fn charge(cents: u64) {
//!     assert_eq!(cents, 250);
//! }
//!
//! airlock::registry::validate()?;
//! airlock::registry::run_json("billing.charge", r#"{"cents": 250}"#)?;
//! # Ok::<(), airlock::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
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
    #[error("{}", unknown_message(name, known))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every registered name, sorted.
        known: Vec<&'static str>,
    },

    /// No task is registered in this binary at all: a worker that does not
    /// name the crate defining its tasks (see the [module docs](self)).
    #[error("{EMPTY}")]
    Empty,

    /// The payload does not match the task's arguments. The task did not run.
    ///
    /// serde's message is the [source](std::error::Error::source), not part
    /// of this error's own message, so that a chain prints it once.
    #[error("the payload for task `{task}` does not match its arguments; the task did not run")]
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
            RegistryError::Empty => None,
        }
    }
}

/// What to do about an empty registry, said by [`validate`] and by a lookup.
const EMPTY: &str = "no task is registered in this binary: the registry holds the \
     #[airlock::task]s of the crates linked into it, and a crate the binary never names is \
     not linked. Name the crate that defines the tasks, e.g. `use my_tasks as _;` in the \
     worker's main.rs";

fn unknown_message(name: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("no task named `{name}` is registered, nor any other: {EMPTY}")
    } else {
        format!(
            "no task named `{name}` is registered; known tasks: {}. Check the name, and that \
             the crate defining the task is linked into this binary (`use my_tasks as _;`)",
            known.join(", ")
        )
    }
}

struct Table {
    /// The names claimed by exactly one task.
    unique: HashMap<&'static str, &'static Registration>,
    /// The names claimed by more than one: the first two claims of each,
    /// sorted by name, so that [`validate`] reports the same one every time.
    duplicates: BTreeMap<&'static str, (&'static Registration, &'static Registration)>,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.unique.is_empty() && self.duplicates.is_empty()
    }

    /// Every name, sorted, duplicates included.
    fn known(&self) -> Vec<&'static str> {
        let mut known: Vec<_> = self
            .unique
            .keys()
            .chain(self.duplicates.keys())
            .copied()
            .collect();
        known.sort_unstable();
        known
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| build(inventory::iter::<Registration>()))
}

fn build(registrations: impl IntoIterator<Item = &'static Registration>) -> Table {
    let mut all: Vec<&'static Registration> = registrations.into_iter().collect();
    all.sort_by_key(|r| (r.name, r.rust_path, r.file, r.line));
    let mut unique = HashMap::new();
    let mut duplicates = BTreeMap::new();
    for registration in all {
        if duplicates.contains_key(registration.name) {
            continue;
        }
        if let Some(first) = unique.insert(registration.name, registration) {
            unique.remove(registration.name);
            duplicates.insert(registration.name, (first, registration));
        }
    }
    Table { unique, duplicates }
}

fn duplicate_error(first: &Registration, second: &Registration) -> RegistryError {
    RegistryError::Duplicate {
        name: first.name,
        first: first.location(),
        second: second.location(),
    }
}

/// Checks the registry: call it at a worker's start-up (or in a test) so
/// that a mistake fails fast rather than at the first job.
///
/// # Errors
///
/// - [`RegistryError::Empty`] when no task is registered at all: the binary
///   does not link the crate that defines its tasks (see the
///   [module docs](self)).
/// - [`RegistryError::Duplicate`] when two tasks claim one name, naming both
///   definitions (the first such name, in name order).
pub fn validate() -> Result<(), RegistryError> {
    check(table())
}

fn check(table: &Table) -> Result<(), RegistryError> {
    if let Some((first, second)) = table.duplicates.values().next() {
        return Err(duplicate_error(first, second));
    }
    if table.is_empty() {
        return Err(RegistryError::Empty);
    }
    Ok(())
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
/// - [`RegistryError::Unknown`] listing the known names (and, when there are
///   none, saying how to link the crate that defines the tasks);
/// - [`RegistryError::Duplicate`] if two tasks claim this name. A duplicate
///   of another name does not affect this lookup.
pub fn lookup(name: &str) -> Result<&'static Registration, RegistryError> {
    find(table(), name)
}

fn find(table: &Table, name: &str) -> Result<&'static Registration, RegistryError> {
    if let Some(registration) = table.unique.get(name) {
        return Ok(registration);
    }
    if let Some((first, second)) = table.duplicates.get(name) {
        return Err(duplicate_error(first, second));
    }
    Err(RegistryError::Unknown {
        name: name.to_owned(),
        known: table.known(),
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
