//! Two tasks that claim one name: the registry refuses to build, naming both
//! definitions. In a binary of its own, since the registry is per binary.

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
