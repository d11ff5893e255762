//! Payloads a worker can decode: unknown fields are refused when decoding,
//! and floats JSON cannot carry are refused when serializing.

use airlock::Intent;
use airlock::registry::{self, RegistryError};
use std::sync::atomic::{AtomicU32, Ordering};

static BUMPED: AtomicU32 = AtomicU32::new(0);

#[airlock::task(name = "payloads.bump")]
fn bump() {
    BUMPED.fetch_add(1, Ordering::SeqCst);
}

#[airlock::task(name = "payloads.resize")]
fn resize(width: u32) {
    let _ = width;
}

/// Accepts fields it does not know: payloads written by a newer version.
#[airlock::task(name = "payloads.tolerant", allow_unknown_fields)]
fn tolerant(width: u32) {
    let _ = width;
}

#[airlock::task(name = "payloads.measure")]
fn measure(label: String, ratio: f64, limit: Option<f32>, samples: Vec<f64>) {
    let _ = (label, ratio, limit, samples);
}

/// A payload with a field the task does not have is refused, naming the
/// field, and the task does not run: even a task without arguments.
#[test]
fn unknown_fields_are_refused() {
    let error = registry::run_json("payloads.bump", r#"{"anything": 1}"#).unwrap_err();
    let airlock::Error::Registry(RegistryError::Payload { task, source }) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*task, "payloads.bump");
    assert!(
        source.to_string().contains("unknown field `anything`"),
        "{source}"
    );
    assert_eq!(BUMPED.load(Ordering::SeqCst), 0, "the task did not run");

    let error = registry::decode("payloads.resize", r#"{"width": 3, "widht": 4}"#).unwrap_err();
    assert!(error.to_string().contains("payloads.resize"), "{error}");
    let RegistryError::Payload { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        source.to_string().contains("unknown field `widht`"),
        "{source}"
    );
    assert!(registry::decode("payloads.resize", r#"{"width": 3}"#).is_ok());
}

/// `#[task(allow_unknown_fields)]` opts out: extra fields are ignored.
#[test]
fn allow_unknown_fields_accepts_them() {
    let intent = registry::decode("payloads.tolerant", r#"{"width": 3, "height": 4}"#).unwrap();
    assert_eq!(intent.payload::<Tolerant>().unwrap().width, 3);
}

fn measured(ratio: f64, limit: Option<f32>, samples: Vec<f64>) -> Intent {
    Intent::new(Measure {
        label: "a".into(),
        ratio,
        limit,
        samples,
    })
}

/// A NaN or infinite float cannot be carried by JSON: serializing the intent
/// fails, naming the task and the field, instead of writing `null`.
#[test]
fn non_finite_floats_are_refused_when_serialized() {
    let json = measured(0.5, Some(1.0), vec![1.0, 2.0]).to_json().unwrap();
    assert_eq!(json["ratio"], 0.5);

    for (intent, field) in [
        (measured(f64::NAN, None, vec![]), "field `ratio` is NaN"),
        (
            measured(0.5, Some(f32::INFINITY), vec![]),
            "field `limit` is infinite",
        ),
        (
            measured(0.5, None, vec![1.0, f64::NEG_INFINITY]),
            "field `samples[1]` is infinite",
        ),
    ] {
        let message = intent.to_json().unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "cannot serialize task `payloads.measure`: {field}"
            )),
            "{message}"
        );
    }
}
