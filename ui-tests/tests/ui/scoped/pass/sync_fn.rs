//! Sync functions: flush on a normal return or `Ok`, discard on `Err`;
//! `?` and early `return` work inside.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

#[derive(Debug)]
enum CheckoutError {
    Airlock(airlock::Error),
    Empty,
}

impl From<airlock::Error> for CheckoutError {
    fn from(error: airlock::Error) -> Self {
        CheckoutError::Airlock(error)
    }
}

/// `Result` whose error can carry an airlock error: `?` on `enqueue` works.
#[airlock::scoped]
fn checkout(items: u32) -> Result<u32, CheckoutError> {
    airlock::enqueue(Send { n: 1 })?;
    if items == 0 {
        return Err(CheckoutError::Empty);
    }
    let parsed: u32 = "10".parse().map_err(|_| CheckoutError::Empty)?;
    Ok(items + parsed)
}

/// Any other `Result`: `Err` discards.
#[airlock::scoped]
fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    airlock::enqueue(Send { n: 1 }).unwrap();
    let n: u32 = text.parse()?;
    Ok(n)
}

/// A plain return value: always a success.
#[airlock::scoped]
fn plain(n: u32) -> u32 {
    airlock::enqueue(Send { n }).unwrap();
    if n > 100 {
        return 100;
    }
    n * 2
}

/// No return value.
#[airlock::scoped]
fn unit() {
    airlock::enqueue(Send { n: 5 }).unwrap();
}

/// `anyhow::Result`: `anyhow::Error: From<airlock::Error>`.
#[airlock::scoped]
fn with_anyhow(fail: bool) -> anyhow::Result<()> {
    airlock::enqueue(Send { n: 3 })?;
    anyhow::ensure!(!fail, "asked to fail");
    Ok(())
}

fn main() {
    assert_eq!(checkout(2).unwrap(), 12);
    assert_eq!(sent(), 1, "flushed on Ok");
    assert!(matches!(checkout(0), Err(CheckoutError::Empty)));
    assert_eq!(sent(), 0, "discarded on Err");
    let _ = CheckoutError::Airlock(airlock::Error::TaskFailed { task: "x", source: "simulated failure".into() });

    assert_eq!(parse("4").unwrap(), 4);
    assert_eq!(sent(), 1);
    assert!(parse("x").is_err());
    assert_eq!(sent(), 0);

    assert_eq!(plain(3), 6);
    assert_eq!(sent(), 3);
    assert_eq!(plain(200), 100);
    assert_eq!(sent(), 200);

    unit();
    assert_eq!(sent(), 5);

    with_anyhow(false).unwrap();
    assert_eq!(sent(), 3);
    assert_eq!(with_anyhow(true).unwrap_err().to_string(), "asked to fail");
    assert_eq!(sent(), 0);

    // A panic discards, then unwinds.
    #[airlock::scoped]
    fn panics() {
        airlock::enqueue(Send { n: 9 }).unwrap();
        panic!("boom");
    }
    // The expected panic must not print a message and a backtrace into the
    // test's output: silence the hook around it.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = std::panic::catch_unwind(panics);
    std::panic::set_hook(hook);
    assert!(caught.is_err());
    assert_eq!(sent(), 0);
}
