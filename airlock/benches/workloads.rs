//! The seven workloads of the Python reference benchmark
//! (`bench/reference/airlock-py/bench_airlock.py`), doing the same work, plus the
//! floor they are measured against.
//!
//! ```text
//! cargo bench -p airlock-effects --bench workloads            # 9 trials
//! cargo bench -p airlock-effects --bench workloads -- 15      # 15 trials
//! ```
//!
//! stdout: one `name: <median ns per op> ns/op` line per workload (the Python
//! script's format). The heap cost of an intent is measured by `benches/heap.rs`,
//! which needs a counting allocator that would slow these timings down.
//! stderr: min / max / spread per workload, to judge the noise.
//!
//! Each trial times only the region the Python docstring names and checks,
//! outside that region, that the work really happened.

use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use airlock::{ActiveScope, AllowAll, BlockTasks, DropAll, Run, Scope, Task};
use serde::{Deserialize, Serialize};
const WARMUP: usize = 2;

/// A workload: the elapsed nanoseconds of its timed region, and its op count.
type Workload = fn() -> (f64, u64);

thread_local! {
    static DISPATCHED: Cell<u64> = const { Cell::new(0) };
    static BLOCKED_CALLS: Cell<u64> = const { Cell::new(0) };
}

fn bump_dispatched() {
    DISPATCHED.with(|d| d.set(d.get() + 1));
}

fn dispatched() -> u64 {
    DISPATCHED.with(Cell::get)
}

fn reset_counts() {
    DISPATCHED.with(|d| d.set(0));
    BLOCKED_CALLS.with(|d| d.set(0));
}

/// `work(n, label="x")`: the two-field payload. Python passes its interned
/// `"x"`; the Rust equivalent of a constant label that may also arrive owned
/// (from a worker's payload) is `Cow<'static, str>`, so neither side
/// allocates for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work {
    n: u64,
    label: Cow<'static, str>,
}

impl Task for Work {
    const NAME: &'static str = "work";
    fn run(self) -> Run {
        black_box(&self);
        bump_dispatched();
        Run::ok()
    }
}

macro_rules! unit_task {
    ($ty:ident, $name:literal, $body:expr) => {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        struct $ty {}

        impl Task for $ty {
            const NAME: &'static str = $name;
            fn run(self) -> Run {
                $body;
                Run::ok()
            }
        }
    };
}

unit_task!(Bump, "bump", bump_dispatched());
unit_task!(Allowed, "allowed", bump_dispatched());
unit_task!(
    Blocked,
    "blocked",
    BLOCKED_CALLS.with(|b| b.set(b.get() + 1))
);

fn work(i: u64) -> Work {
    Work {
        n: i,
        label: Cow::Borrowed("x"),
    }
}

fn elapsed_ns(start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64
}

fn entered(scope: Scope) -> ActiveScope {
    scope.enter().expect("not inside a hook")
}

// --- workloads: each returns (elapsed ns of the timed region, ops) ----------

fn floor() -> (f64, u64) {
    const N: u64 = 100_000;
    let mut buffer: Vec<Box<dyn Any>> = Vec::new();
    let start = Instant::now();
    for i in 0..N {
        buffer.push(Box::new(work(black_box(i))));
    }
    let elapsed = elapsed_ns(start);
    assert_eq!(buffer.len() as u64, N);
    black_box(buffer);
    (elapsed, N)
}

fn enqueue_dropall() -> (f64, u64) {
    const N: u64 = 100_000;
    reset_counts();
    let mut scope = entered(Scope::new().policy(DropAll));
    let start = Instant::now();
    for i in 0..N {
        airlock::enqueue(work(black_box(i))).unwrap();
    }
    let elapsed = elapsed_ns(start);
    // Counted, not cloned: a deep copy of the buffer between trials is work
    // the Python side does not do.
    assert_eq!(scope.len() as u64, N);
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert_eq!(report.dropped().count() as u64, N);
    assert_eq!(dispatched(), 0);
    (elapsed, N)
}

fn scope_empty() -> (f64, u64) {
    const N: u64 = 100_000;
    reset_counts();
    let start = Instant::now();
    for _ in 0..N {
        airlock::scope(|| Ok::<_, airlock::Error>(())).unwrap();
    }
    let elapsed = elapsed_ns(start);
    assert_eq!(dispatched(), 0);
    assert!(
        airlock::enqueue(Bump {}).is_err(),
        "no scope may be left open"
    );
    (elapsed, N)
}

fn scope_one_intent_sync() -> (f64, u64) {
    const N: u64 = 100_000;
    reset_counts();
    let start = Instant::now();
    for _ in 0..N {
        airlock::scope(|| airlock::enqueue(Bump {})).unwrap();
    }
    let elapsed = elapsed_ns(start);
    assert_eq!(dispatched(), N);
    (elapsed, N)
}

fn flush_10k_sync() -> (f64, u64) {
    const N: u64 = 10_000;
    reset_counts();
    let start = Instant::now();
    airlock::scope(|| {
        for i in 0..N {
            airlock::enqueue(work(black_box(i)))?;
        }
        Ok::<_, airlock::Error>(())
    })
    .unwrap();
    let elapsed = elapsed_ns(start);
    assert_eq!(dispatched(), N);
    (elapsed, N)
}

fn nested_capture() -> (f64, u64) {
    const N: u64 = 10_000;
    reset_counts();
    let mut outer = entered(Scope::new());
    let start = Instant::now();
    for _ in 0..N {
        airlock::scope(|| airlock::enqueue(Bump {})).unwrap();
    }
    let elapsed = elapsed_ns(start);
    assert_eq!(dispatched(), 0, "inner scopes must not dispatch");
    assert_eq!(outer.len() as u64, N);
    assert_eq!(outer.captured_intents().len() as u64, N);
    outer.exit().unwrap();
    outer.flush().unwrap();
    assert_eq!(dispatched(), N);
    (elapsed, N)
}

/// Not one of the reference's workloads: 10,000 scopes nested in each
/// other, each enqueueing one intent before opening the next, then flushed by
/// the outermost. Per intent it costs the same whatever the depth (no
/// quadratic blow-up), about 2,600 instructions (callgrind): four times
/// `nested_capture`, because past 16 intents a captured scope moves as one
/// chunk, which allocates, instead of staying in place. Its time also counts
/// the page faults of the fresh thread's stack the recursion runs on.
fn nested_deep() -> (f64, u64) {
    const N: u64 = 10_000;
    fn level(depth: u64) -> airlock::Result<()> {
        if depth == 0 {
            return Ok(());
        }
        airlock::scope(|| {
            airlock::enqueue(Bump {})?;
            level(depth - 1)
        })
    }
    // The nesting recurses: give it a stack of its own.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            reset_counts();
            let start = Instant::now();
            level(N).unwrap();
            let elapsed = elapsed_ns(start);
            assert_eq!(dispatched(), N);
            (elapsed, N)
        })
        .unwrap()
        .join()
        .unwrap()
}

fn local_policy() -> (f64, u64) {
    const N: u64 = 100_000;
    reset_counts();
    let mut scope = entered(Scope::new().policy(AllowAll));
    let start = Instant::now();
    for _ in 0..N {
        airlock::with_policy(BlockTasks::names(["other"]), || airlock::enqueue(Bump {})).unwrap();
    }
    let elapsed = elapsed_ns(start);
    assert_eq!(scope.len() as u64, N);
    scope.exit().unwrap();
    let report = scope.flush().unwrap();
    assert_eq!(report.dispatched().count() as u64, N);
    assert_eq!(dispatched(), N);
    (elapsed, N)
}

fn blocktasks_flush() -> (f64, u64) {
    const N: u64 = 10_000;
    reset_counts();
    let start = Instant::now();
    Scope::new()
        .policy(BlockTasks::names(["blocked"]))
        .run(|| {
            for _ in 0..N / 2 {
                airlock::enqueue(Blocked {})?;
                airlock::enqueue(Allowed {})?;
            }
            Ok::<_, airlock::Error>(())
        })
        .unwrap();
    let elapsed = elapsed_ns(start);
    assert_eq!(dispatched(), N / 2);
    assert_eq!(BLOCKED_CALLS.with(Cell::get), 0);
    (elapsed, N)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the trial count.
    let trials = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(9);
    assert!(trials >= 7, "report the median of at least 7 trials");
    // Any other bare word keeps only the workloads whose name contains it.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-') && arg.parse::<usize>().is_err())
        .collect();

    let workloads: [(&str, Workload); 9] = [
        ("floor_box_push", floor),
        ("enqueue_dropall", enqueue_dropall),
        ("scope_empty", scope_empty),
        ("scope_one_intent_sync", scope_one_intent_sync),
        ("flush_10k_sync", flush_10k_sync),
        ("nested_capture", nested_capture),
        ("local_policy", local_policy),
        ("blocktasks_flush", blocktasks_flush),
        ("nested_deep_10k", nested_deep),
    ];
    for (name, workload) in workloads {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        for _ in 0..WARMUP {
            workload();
        }
        let mut per_op: Vec<f64> = (0..trials)
            .map(|_| {
                let (elapsed, ops) = workload();
                elapsed / ops as f64
            })
            .collect();
        let med = median(&mut per_op);
        let (min, max) = (per_op[0], per_op[per_op.len() - 1]);
        println!("{name}: {med:.1} ns/op");
        eprintln!(
            "  # {name}: trials={trials} min={min:.1} max={max:.1} spread={:.1}%",
            (max - min) / med * 100.0
        );
    }
}
