//! The handlers both benchmark binaries serve: the same routes with and
//! without `AirlockLayer`.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many effects ran.
pub static EFFECTS: AtomicU64 = AtomicU64::new(0);

/// The effect: counts.
#[airlock::task]
pub fn bump() {
    EFFECTS.fetch_add(1, Ordering::Relaxed);
}

/// Answers `ok`.
pub async fn zero() -> &'static str {
    "ok"
}

/// Answers `ok` after causing the effect in place (the service without
/// airlock).
pub async fn one_in_place() -> &'static str {
    bump();
    "ok"
}

/// Answers `ok` after enqueueing the effect (the service behind the layer).
pub async fn one_enqueued() -> &'static str {
    airlock::enqueue(Bump {}).expect("the layer's scope is current");
    "ok"
}
