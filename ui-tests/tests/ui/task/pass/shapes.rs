//! Argument shapes: none (a braced empty struct), `mut` bindings, raw
//! identifiers, owned std types, a task defined inside a function.
#![deny(warnings)]

use std::borrow::Cow;
use std::collections::BTreeMap;

use airlock::Task;

#[airlock::task]
fn bump() {}

#[airlock::task]
fn tally(mut count: u32, r#type: String, tags: Vec<String>) -> Result<(), std::io::Error> {
    count += 1;
    let _ = (count, r#type, tags);
    Ok(())
}

#[airlock::task]
fn owned_kinds(
    name: Cow<'static, str>,
    map: BTreeMap<String, Option<(u8, i64)>>,
    bytes: Box<[u8]>,
    array: [u16; 4],
) {
    let _ = (name, map, bytes, array);
}

/// Deprecated: calling it from the generated `run` is not a warning.
#[deprecated = "use tally"]
#[airlock::task]
fn old_bump() {}

#[airlock::task]
fn r#move(to: String) {
    let _ = to;
}

fn main() {
    let b = Bump {};
    assert_eq!(format!("{b:?}"), "Bump");
    b.run().wait().unwrap();

    let t = Tally {
        count: 1,
        r#type: "x".into(),
        tags: vec![],
    };
    t.run().wait().unwrap();

    OwnedKinds {
        name: "n".into(),
        map: BTreeMap::new(),
        bytes: Box::new([1, 2]),
        array: [0; 4],
    }
    .run()
    .wait()
    .unwrap();

    OldBump {}.run().wait().unwrap();
    assert_eq!(Move::NAME, "move");
    Move { to: "x".into() }.run().wait().unwrap();

    #[airlock::task]
    fn local_task(n: u8) {
        let _ = n;
    }
    LocalTask { n: 1 }.run().wait().unwrap();
    assert!(airlock::registry::lookup("local_task").is_ok());

    // Payloads round-trip through JSON; the empty struct reads `{}`.
    airlock::registry::run_json("bump", "{}").unwrap();
    airlock::registry::run_json("tally", r#"{"count":1,"type":"t","tags":["a"]}"#).unwrap();
}
