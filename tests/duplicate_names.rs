//! Two tasks that claim one name: `validate` fails naming both definitions,
//! lookups of that name fail, and every other name still works. In a binary
//! of its own, since the registry is per binary.

use airlock::registry::{self, RegistryError};

mod mail {
    #[airlock::task(name = "notify")]
    pub(crate) fn send_mail(to: String) {
        let _ = to;
    }
}

mod sms {
    #[airlock::task(name = "notify")]
    pub(crate) fn send_sms(number: String) {
        let _ = number;
    }
}

mod audit {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) static AUDITED: AtomicU64 = AtomicU64::new(0);

    #[airlock::task]
    pub(crate) fn audit(entry: u64) {
        AUDITED.fetch_add(entry, Ordering::SeqCst);
    }
}

/// `validate` reports the duplicate with both Rust paths.
#[test]
fn validate_names_both_definitions() {
    let error = registry::validate().unwrap_err();
    let RegistryError::Duplicate {
        name,
        first,
        second,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*name, "notify");
    let both = format!("{first} {second}");
    assert!(both.contains("duplicate_names::mail::send_mail"), "{both}");
    assert!(both.contains("duplicate_names::sms::send_sms"), "{both}");
    assert!(error.to_string().contains("name = "), "says how to fix it");
    assert_eq!(airlock::Error::from(error).task(), Some("notify"));
}

/// Lookups fail with the same error rather than picking one at random.
#[test]
fn lookups_report_the_duplicate() {
    assert!(matches!(
        registry::lookup("notify"),
        Err(RegistryError::Duplicate { .. })
    ));
    assert!(registry::run_json("notify", r#"{"to": "a"}"#).is_err());
}

/// A duplicate elsewhere in the binary does not break lookups of unique
/// names: a worker keeps running every other task.
#[test]
fn unique_names_still_resolve() {
    let audit = registry::lookup("audit").expect("`audit` is unique");
    assert_eq!(audit.rust_path(), "duplicate_names::audit::audit");
    registry::run_json("audit", r#"{"entry": 4}"#).unwrap();
    assert_eq!(audit::AUDITED.load(std::sync::atomic::Ordering::SeqCst), 4);
    let Err(RegistryError::Unknown { known, .. }) = registry::lookup("audit.typo") else {
        panic!("an unknown name is `Unknown`");
    };
    assert_eq!(
        known,
        ["audit", "notify"],
        "duplicated names are still known"
    );
}
