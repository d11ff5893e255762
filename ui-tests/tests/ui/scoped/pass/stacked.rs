//! Other attributes before and after `#[scoped]`: `#[tracing::instrument]`,
//! lint attributes, `#[must_use]`, `#[inline]`, docs, inner attributes.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

/// Documented.
#[tracing::instrument]
#[airlock::scoped]
fn traced(n: u32) -> airlock::Result<u32> {
    airlock::enqueue(Send { n })?;
    Ok(n)
}

#[airlock::scoped]
#[tracing::instrument(err)]
fn traced_inner(n: u32) -> Result<u32, airlock::Error> {
    airlock::enqueue(Send { n })?;
    Ok(n)
}

#[tracing::instrument]
#[airlock::scoped]
async fn traced_async(n: u32) -> airlock::Result<u32> {
    airlock::enqueue(Send { n })?;
    Ok(n)
}

struct Service {
    base: u32,
}

impl Service {
    #[tracing::instrument(skip(self), fields(base = self.base))]
    #[airlock::scoped]
    async fn handle(&self, n: u32) -> airlock::Result<u32> {
        airlock::enqueue(Send { n })?;
        Ok(self.base + n)
    }
}

#[must_use]
#[inline]
#[airlock::scoped]
#[allow(clippy::needless_return)]
pub fn attrs(n: u32) -> u32 {
    #![allow(unused_variables)]
    let unused = 1;
    return n;
}

#[cfg(any())]
#[airlock::scoped]
fn configured_out() -> u32 {
    compile_error!("cfg'd out before expansion")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(traced(1).unwrap(), 1);
    assert_eq!(traced_inner(2).unwrap(), 2);
    assert_eq!(traced_async(4).await.unwrap(), 4);
    assert_eq!(SENT.load(Ordering::SeqCst), 7);
    assert_eq!(Service { base: 1 }.handle(8).await.unwrap(), 9);
    assert_eq!(SENT.load(Ordering::SeqCst), 15);
    assert_eq!(attrs(3), 3);
}
