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

/// The three ways an intent holds its task: zero-sized, in place (up to four
/// words), and boxed (larger). Each must keep its payload, its captured flag,
/// its local policies, options and origin through every path an intent
/// takes.
mod every_size {
    use std::sync::atomic::{AtomicU32, Ordering};

    use airlock::{AllowAll, DispatchOptions, Intent, Scope};

    static RAN: AtomicU32 = AtomicU32::new(0);

    #[airlock::task(name = "payloads.sized.zero")]
    fn zero() {
        RAN.fetch_add(1, Ordering::SeqCst);
    }

    /// Four words: held in place.
    #[airlock::task(name = "payloads.sized.small")]
    fn small(to: String, fail: bool) -> Result<(), String> {
        RAN.fetch_add(1, Ordering::SeqCst);
        assert_eq!(to, "a@b.c", "the payload arrived whole");
        if fail {
            Err(format!("refused {to}"))
        } else {
            Ok(())
        }
    }

    /// Seven words: boxed.
    #[airlock::task(name = "payloads.sized.large")]
    fn large(to: String, cc: String, fail: bool) -> Result<(), String> {
        RAN.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            (&*to, &*cc),
            ("a@b.c", "d@e.f"),
            "the payload arrived whole"
        );
        if fail {
            Err(format!("refused {to} and {cc}"))
        } else {
            Ok(())
        }
    }

    fn sizes(fail: bool) -> [Intent; 3] {
        [
            Intent::new(Zero {}),
            Intent::new(Small {
                to: "a@b.c".into(),
                fail,
            }),
            Intent::new(Large {
                to: "a@b.c".into(),
                cc: "d@e.f".into(),
                fail,
            }),
        ]
    }

    fn json(intents: &[Intent]) -> Vec<serde_json::Value> {
        intents.iter().map(|i| i.to_json().unwrap()).collect()
    }

    /// Captured from a nested scope, in a local policy region, with options
    /// and an origin, cloned: every intent keeps all of it.
    #[test]
    fn an_intent_keeps_its_route_and_payload_at_every_size() {
        let expected = json(&sizes(false));
        let ((), intents) = airlock::capture(|| {
            for intent in sizes(false) {
                airlock::scope(|| airlock::enqueue(intent)).unwrap();
            }
            for intent in sizes(false) {
                airlock::with_policy(AllowAll, || airlock::enqueue(intent)).unwrap();
            }
            for intent in sizes(false) {
                let intent = intent
                    .with_options(DispatchOptions::new().queue("slow"))
                    .with_origin("checkout");
                airlock::scope(|| airlock::enqueue(intent)).unwrap();
            }
        });
        assert_eq!(intents.len(), 9);
        let (captured, rest) = intents.split_at(3);
        let (regional, full) = rest.split_at(3);
        for (group, name) in [
            (captured, "captured"),
            (regional, "regional"),
            (full, "full"),
        ] {
            assert_eq!(json(group), expected, "{name}");
            let clones: Vec<Intent> = group.to_vec();
            assert_eq!(json(&clones), expected, "{name}, cloned");
            for (intent, clone) in group.iter().zip(&clones) {
                assert_eq!(
                    intent.is_captured(),
                    clone.is_captured(),
                    "{name}: {intent}"
                );
                assert_eq!(intent.policies().count(), clone.policies().count());
                assert_eq!(intent.origin(), clone.origin());
            }
        }
        assert!(captured.iter().all(Intent::is_captured));
        assert!(captured.iter().all(|i| i.policies().count() == 0));
        assert!(
            regional
                .iter()
                .all(|i| !i.is_captured() && i.policies().count() == 1)
        );
        for intent in full {
            assert!(intent.is_captured(), "{intent}");
            assert_eq!(intent.origin(), Some("checkout"));
            assert_eq!(intent.options().queue.as_deref(), Some("slow"));
        }
        assert!(
            captured[1]
                .payload::<Small>()
                .is_some_and(|s| s.to == "a@b.c")
        );
        assert!(
            regional[2]
                .payload::<Large>()
                .is_some_and(|l| l.cc == "d@e.f")
        );
        assert!(full[0].is::<Zero>() && !full[0].is::<Small>());

        // Enqueued again, each is judged afresh where it lands: no longer
        // captured, no policies of where it was, options and origin kept.
        let ((), again) = airlock::capture(|| {
            for intent in intents {
                airlock::enqueue(intent).unwrap();
            }
        });
        assert_eq!(json(&again[6..]), expected);
        for intent in &again {
            assert!(
                !intent.is_captured() && intent.policies().count() == 0,
                "{intent}"
            );
        }
        assert!(again[6..].iter().all(|i| i.origin() == Some("checkout")));
    }

    /// A failed dispatch hands each back whole, and a handle on another
    /// thread sends each to its scope.
    #[test]
    fn an_intent_is_handed_back_and_sent_whole_at_every_size() {
        for intent in sizes(true).into_iter().skip(1) {
            let expected = intent.to_json().unwrap();
            let error = Scope::new()
                .run(|| airlock::enqueue(intent.with_origin("retry")))
                .unwrap_err();
            let back = error.into_undispatched();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].to_json().unwrap(), expected);
            assert_eq!(back[0].origin(), Some("retry"));
        }

        let before = RAN.load(Ordering::SeqCst);
        let mut scope = Scope::new().enter().unwrap();
        let handle = airlock::handle().unwrap();
        std::thread::spawn(move || {
            for intent in sizes(false) {
                handle.enqueue(intent).unwrap();
            }
        })
        .join()
        .unwrap();
        scope.exit().unwrap();
        let report = scope.flush().unwrap();
        let names: Vec<_> = sizes(false).iter().map(Intent::name).collect();
        assert_eq!(report.dispatched().collect::<Vec<_>>(), names);
        assert_eq!(RAN.load(Ordering::SeqCst) - before, 3);
    }
}
