//! The task registry: listing, lookup and running by name, as a worker does.

use airlock::registry::{self, RegistryError};
use airlock::{Error, Task};
use std::sync::atomic::{AtomicU64, Ordering};

static CHARGED: AtomicU64 = AtomicU64::new(0);
static REFUNDED: AtomicU64 = AtomicU64::new(0);

/// Charges a card.
#[airlock::task(name = "billing.charge")]
fn charge(cents: u64) -> Result<(), std::io::Error> {
    if cents == 0 {
        return Err(std::io::Error::other("nothing to charge"));
    }
    CHARGED.fetch_add(cents, Ordering::SeqCst);
    Ok(())
}

#[airlock::task]
async fn refund(cents: u64) {
    tokio::task::yield_now().await;
    REFUNDED.fetch_add(cents, Ordering::SeqCst);
}

mod nested {
    #[airlock::task]
    pub(crate) fn audit(entry: String) {
        let _ = entry;
    }
}

/// Every task of the binary is listed with its name, Rust path and place.
#[test]
fn lists_every_task() {
    let tasks = registry::tasks();
    let charge = tasks
        .iter()
        .find(|t| t.name() == "billing.charge")
        .expect("charge is registered");
    assert_eq!(charge.rust_path(), "registry::charge");
    assert!(charge.file().ends_with("registry.rs"));
    let line = include_str!("registry.rs")
        .lines()
        .position(|line| line.starts_with("fn charge("))
        .unwrap()
        + 1;
    assert_eq!(charge.line() as usize, line, "the line of `fn charge`");
    let audit = tasks.iter().find(|t| t.name() == "audit").unwrap();
    assert_eq!(audit.rust_path(), "registry::nested::audit");
    let names: Vec<_> = tasks.iter().map(|t| t.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
    registry::validate().unwrap();
}

/// A worker runs a task from its name and JSON payload.
#[test]
fn runs_by_name() {
    let before = CHARGED.load(Ordering::SeqCst);
    registry::run_json("billing.charge", r#"{"cents": 250}"#).unwrap();
    assert_eq!(CHARGED.load(Ordering::SeqCst) - before, 250);
}

/// Async tasks run by name too.
#[tokio::test]
async fn runs_async_by_name() {
    registry::run_json_async("refund", r#"{"cents": 5}"#)
        .await
        .unwrap();
    assert_eq!(REFUNDED.load(Ordering::SeqCst), 5);
    let intent = registry::decode("refund", r#"{"cents": 1}"#).unwrap();
    assert!(intent.is::<Refund>());
    assert!(intent.is_async());
}

/// A task's error comes back as `TaskFailed` naming it.
#[test]
fn a_failing_task_is_task_failed() {
    let error = registry::run_json("billing.charge", r#"{"cents": 0}"#).unwrap_err();
    assert!(matches!(
        error,
        Error::TaskFailed {
            task: "billing.charge",
            ..
        }
    ));
    assert_eq!(error.to_string(), "task `billing.charge` failed");
    let source = std::error::Error::source(&error).expect("the task's error is the source");
    assert!(source.to_string().contains("nothing to charge"), "{source}");
}

/// An unknown name is an error that lists the known ones.
#[test]
fn unknown_name_lists_the_known() {
    let error = registry::lookup("billing.charj").unwrap_err();
    let RegistryError::Unknown { name, known } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(name, "billing.charj");
    assert!(known.contains(&"billing.charge") && known.contains(&"refund"));
    let message = error.to_string();
    assert!(message.contains("billing.charj") && message.contains("billing.charge"));
    let error = registry::run_json("billing.charj", "{}").unwrap_err();
    assert!(matches!(
        error,
        Error::Registry(RegistryError::Unknown { .. })
    ));
    assert_eq!(
        error.task(),
        Some("billing.charj"),
        "names the task asked for"
    );
}

/// A malformed payload is an error carrying serde's message; the task does
/// not run.
#[test]
fn malformed_payload_does_not_run() {
    let before = CHARGED.load(Ordering::SeqCst);
    let error = registry::run_json("billing.charge", r#"{"cents": "lots"}"#).unwrap_err();
    let Error::Registry(RegistryError::Payload { task, source }) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*task, "billing.charge");
    assert!(source.to_string().contains("invalid type"), "{source}");
    assert!(error.to_string().contains("does not match its arguments"));
    assert_eq!(error.task(), Some("billing.charge"));
    assert!(
        registry::decode("billing.charge", "{}").is_err(),
        "missing field"
    );
    assert_eq!(CHARGED.load(Ordering::SeqCst), before);
}

/// A decoded intent is a real intent: it can be enqueued and inspected.
#[test]
fn decoded_intents_can_be_enqueued() {
    let intent = registry::lookup(Charge::NAME)
        .unwrap()
        .decode_value(serde_json::json!({ "cents": 3 }))
        .unwrap();
    assert_eq!(intent.payload::<Charge>().unwrap().cents, 3);
    let (_, intents) = airlock::capture(|| airlock::enqueue(intent));
    assert_eq!(intents[0].to_string(), "billing.charge(cents: 3)");
}

/// The payload error's message does not repeat serde's, which is its source:
/// `anyhow`'s `{:#}` prints each once.
#[test]
fn payload_error_prints_serde_message_once() {
    let error = registry::run_json("billing.charge", r#"{"cents": "lots"}"#).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert_eq!(chain.matches("invalid type").count(), 1, "{chain}");
    assert!(
        chain.starts_with("the payload for task `billing.charge` does not match"),
        "{chain}"
    );
}

/// An unknown name says how to link the crate that defines the tasks.
#[test]
fn unknown_name_says_how_to_link_the_tasks() {
    let message = registry::lookup("nope").unwrap_err().to_string();
    assert!(message.contains("`use my_tasks as _;`"), "{message}");
}
