//! A binary without tasks, as a worker that does not link the crate defining
//! its tasks sees it: `validate` and lookups say how to link them. In a
//! binary of its own, since the registry is per binary.

use airlock::registry::{self, RegistryError};

/// `validate` fails on an empty registry, saying how to link the tasks.
#[test]
fn validate_rejects_an_empty_registry() {
    assert!(registry::tasks().is_empty());
    let error = registry::validate().unwrap_err();
    assert!(matches!(error, RegistryError::Empty), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("no task is registered in this binary"),
        "{message}"
    );
    assert!(message.contains("`use my_tasks as _;`"), "{message}");
    assert_eq!(airlock::Error::from(error).task(), None, "no task to name");
}

/// A lookup in an empty registry says the same, with the name asked for.
#[test]
fn lookups_in_an_empty_registry_say_how_to_link() {
    let error = registry::lookup("billing.charge").unwrap_err();
    let RegistryError::Unknown { name, known } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(name, "billing.charge");
    assert!(known.is_empty());
    let message = error.to_string();
    assert!(
        message.starts_with("no task named `billing.charge` is registered, nor any other"),
        "{message}"
    );
    assert!(message.contains("`use my_tasks as _;`"), "{message}");
    let error = registry::run_json("billing.charge", "{}").unwrap_err();
    assert!(error.to_string().contains("use my_tasks as _;"), "{error}");
}
