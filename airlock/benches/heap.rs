//! Heap held per buffered two-field intent (`work(n, label="x")`, as in the
//! reference benchmark), counted by the allocator: the payload, its string,
//! and the intent's share of the scope's buffer.
//!
//! ```text
//! cargo bench -p airlock-effects --bench heap
//! ```
//!
//! stdout: `heap_per_intent: <bytes> bytes/intent`.

use airlock::{DropAll, Run, Scope, Task};
use serde::{Deserialize, Serialize};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work {
    n: u64,
    label: String,
}

impl Task for Work {
    const NAME: &'static str = "work";
    fn run(self) -> Run {
        Run::ok()
    }
}

fn main() {
    const N: u64 = 100_000;
    let mut scope = Scope::new().policy(DropAll).enter().expect("not in a hook");
    let region = Region::new(GLOBAL);
    for n in 0..N {
        airlock::enqueue(Work {
            n,
            label: "x".to_owned(),
        })
        .expect("a scope is current");
    }
    let stats = region.change();
    assert_eq!(scope.len() as u64, N);
    scope.exit().expect("current");
    scope.discard().expect("exited");
    let held = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
    let per_intent = held / N as f64;
    println!("heap_per_intent: {per_intent:.1} bytes/intent");
    assert!(
        per_intent <= 128.0,
        "over the 128-byte budget: {per_intent}"
    );
}
