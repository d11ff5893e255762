//! Heap held per buffered two-field intent (`work(n, label="x")`, as in the
//! reference benchmark), as the allocator sees it: the usable size of every
//! block (`malloc_usable_size`), so the payload, its string, and the
//! intent's share of the scope's buffer, spare capacity included.
//!
//! ```text
//! cargo bench -p airlock-effects --bench heap
//! ```
//!
//! One pass enqueues 1,000,000 intents into a fresh thread's scope and reads
//! the heap after each: the footprint after `n` enqueues is the one a scope
//! of `n` intents has, so the pass sees every length between 1,000 and
//! 1,000,000, the worst one included (just past a growth of the buffer).
//! It fails above 128 bytes: a count, not a timing, so CI runs it.
//!
//! stdout: `heap_per_intent: <bytes> bytes/intent (worst, at n = <n>)`.

// A counting allocator is a `GlobalAlloc`, which is unsafe to implement; each
// block says why it is sound.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use airlock::{DropAll, Run, Scope, Task};
use serde::{Deserialize, Serialize};

/// The system allocator, counting the usable size of the blocks it holds.
struct Usable;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn usable(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` is a live block from the system allocator (malloc,
    // realloc or posix_memalign), which is what `malloc_usable_size` takes.
    unsafe { libc::malloc_usable_size(ptr.cast()) as isize }
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// only counts the blocks it returns or takes back.
unsafe impl GlobalAlloc for Usable {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(usable(ptr), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(usable(ptr), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's block and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = usable(ptr);
        // SAFETY: forwarded with the caller's block, layout and size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(usable(new) - before, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Usable = Usable;

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

const BUDGET: f64 = 128.0;

fn main() {
    const FROM: u64 = 1_000;
    const TO: u64 = 1_000_000;
    // A fresh thread: its buffer starts empty, as a new service thread's does.
    let (worst, at) = std::thread::spawn(|| {
        let mut scope = Scope::new().policy(DropAll).enter().expect("not in a hook");
        let base = LIVE.load(Ordering::Relaxed);
        let mut worst = (0.0_f64, 0);
        for n in 1..=TO {
            airlock::enqueue(Work {
                n,
                label: "x".to_owned(),
            })
            .expect("a scope is current");
            if n >= FROM {
                let per_intent = (LIVE.load(Ordering::Relaxed) - base) as f64 / n as f64;
                if per_intent > worst.0 {
                    worst = (per_intent, n);
                }
            }
        }
        assert_eq!(scope.len() as u64, TO);
        scope.exit().expect("current");
        scope.discard().expect("exited");
        worst
    })
    .join()
    .expect("the measuring thread panicked");
    println!("heap_per_intent: {worst:.1} bytes/intent (worst, at n = {at})");
    assert!(
        worst <= BUDGET,
        "a buffered intent costs {worst:.1} bytes at n = {at}, over the {BUDGET}-byte budget"
    );
}
