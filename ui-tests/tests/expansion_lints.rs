//! Every form of both attributes, compiled as an ordinary test target so that
//! `cargo clippy --all-targets -- -D warnings` lints the expanded code: a
//! user who denies warnings must not get any from the expansion.
#![deny(warnings, missing_docs, unreachable_pub, rust_2018_idioms)]

use std::sync::atomic::{AtomicU32, Ordering};

use airlock::{DropAll, Independent, InlineExecutor, Task};

static SENT: AtomicU32 = AtomicU32::new(0);

/// Counts.
#[airlock::task]
fn count(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

// The function opts out of `missing_docs`; the generated struct and fields
// must not need to.
#[allow(missing_docs)]
#[airlock::task]
pub fn undocumented(n: u32) -> Result<(), std::io::Error> {
    let _ = n;
    Ok(())
}

/// Every option.
#[airlock::task(
    name = "lints.all_options",
    ident = AllOptionsIntent,
    queue = "q",
    max_attempts = 3,
    priority = -1,
    delay = "2s"
)]
pub(crate) async fn all_options(to: String, ids: Vec<u64>) -> anyhow::Result<()> {
    let _ = (to, ids);
    Ok(())
}

#[airlock::task]
fn no_arguments() {}

#[airlock::scoped]
fn sync_result(n: u32) -> airlock::Result<u32> {
    airlock::enqueue(Count { n })?;
    Ok(n)
}

#[airlock::scoped(policy = DropAll, executor = InlineExecutor, scope = Independent)]
fn sync_plain(n: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    n + 1
}

#[airlock::scoped]
fn diverges() -> u32 {
    panic!("never returns")
}

#[airlock::scoped]
fn opaque(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

#[airlock::scoped]
async fn async_result(n: u32) -> Result<u32, airlock::Error> {
    airlock::enqueue(Count { n })?;
    Ok(n)
}

#[airlock::scoped]
async fn async_unit() {}

struct Service {
    count: u32,
}

impl Service {
    #[airlock::scoped]
    fn by_ref(&self) -> &u32 {
        &self.count
    }

    #[airlock::scoped]
    fn by_mut(&mut self) -> &mut Self {
        self.count += 1;
        self
    }

    #[airlock::scoped]
    async fn by_value(self) -> u32 {
        self.count
    }
}

#[tokio::test(flavor = "current_thread")]
async fn expansions_run() {
    count(0);
    undocumented(0).unwrap();
    drop(all_options(String::new(), vec![]));
    no_arguments();
    assert_eq!(AllOptionsIntent::NAME, "lints.all_options");
    assert_eq!(NoArguments::NAME, "no_arguments");
    let _ = Undocumented { n: 1 };

    assert_eq!(sync_result(2).unwrap(), 2);
    assert_eq!(SENT.swap(0, Ordering::SeqCst), 2);
    assert_eq!(sync_plain(0), 0);
    assert!(std::panic::catch_unwind(diverges).is_err());
    assert_eq!(opaque(3).count(), 3);

    let mut service = Service { count: 0 };
    service.by_mut().by_mut();
    assert_eq!(*service.by_ref(), 2);

    assert_eq!(async_result(4).await.unwrap(), 4);
    assert_eq!(SENT.swap(0, Ordering::SeqCst), 4);
    async_unit().await;
    assert_eq!(service.by_value().await, 2);
}

/// `#[tokio::test]` outside `#[scoped]`: the test body runs in a scope.
#[tokio::test(flavor = "current_thread")]
#[airlock::scoped]
async fn stacked_with_tokio_test() -> airlock::Result<()> {
    assert!(airlock::buffered().is_empty());
    airlock::enqueue(NoArguments {})?;
    assert_eq!(airlock::buffered().len(), 1);
    Ok(())
}
