#!/usr/bin/env python3
"""airlock against the Python reference and the hand-written Rust baselines,
side by side, in one run.

    python3 bench/compare.py              # 3 rounds of 7 trials per side
    python3 bench/compare.py --rounds 5   # more rounds

Per workload, each round runs one process per side back to back (airlock,
the hand-written baselines, airlock-py), 7 timed trials each after 2 warm-up
trials; the figure per side is the median over rounds of each round's median.
Interleaving the sides round by round means a change in the machine's load
hits them alike. Every side runs pinned to the same core.

The three sides do the same work, timed over the same region (the docstring
of `reference/airlock-py/bench_airlock.py` says exactly what); the default
glibc allocator, no tunables. Every reference lives in this checkout:

- `reference/airlock-py/`: the Python reference benchmark, run against
  `airlock-py==0.1.0a3` from PyPI in a virtualenv kept in
  `target/bench-venv` (made on first use: needs PyPI).
- `reference/handwritten/`: what a Rust developer writes instead of airlock,
  a simple version and a tuned one (`mark/`).

The load average is read before and after. The run waits (up to two
minutes) for the one-minute load to fall below 1 first, so that it starts on
an idle machine. The benchmark itself keeps one core busy, which adds about
1 to the load by the end; a run that starts above 1 or ends above 2 (on this
2-core kind: another process competed for a core) is marked UNDER LOAD: its
ratios are not results, because a preempted 25 ms Python trial is inflated
more than a 0.4 ms Rust one.

Prints, slowest ratio first: airlock, simple, tuned, Python (ns/op, medians),
then Python/airlock, airlock/simple and airlock/tuned. Then the heap each
buffered intent costs at its worst length (`cargo bench --bench heap`).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "bench" / "reference"
PY_BENCH = REFERENCE / "airlock-py" / "bench_airlock.py"
HANDWRITTEN = REFERENCE / "handwritten" / "Cargo.toml"
VENV = ROOT / "target" / "bench-venv"
AIRLOCK_PY = "airlock-py==0.1.0a3"
TRIALS = 7
# One-minute load averages: idle before, and no more than the benchmark's own
# process after.
IDLE, LOADED = 1.0, 2.0
WORKLOADS = [
    "enqueue_dropall",
    "scope_empty",
    "scope_one_intent_sync",
    "flush_10k_sync",
    "nested_capture",
    "local_policy",
    "blocktasks_flush",
]
LINE = re.compile(r"^([\w/]+): ([0-9.]+) (ns/op|bytes/intent)$")

# Runs one workload of the reference script: the script's own trial loop
# (`measure`: 2 warm-up trials, then TRIALS timed ones, gc.collect() before
# each) and its own output format.
PY_DRIVER = """
import statistics, sys
name, trials = sys.argv[1], sys.argv[2]
sys.argv = ["bench_airlock.py", trials]
sys.path.insert(0, {dir!r})
import bench_airlock as b
b.sanity_checks()
print(f"{{name}}: {{statistics.median(b.measure(getattr(b, name))):.1f}} ns/op", flush=True)
"""


def parse(output):
    return {m[1]: float(m[2]) for m in map(LINE.match, output.splitlines()) if m}


def run(cmd, **kwargs):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)
    return parse(out.stdout)


def build():
    """Builds the Rust sides once; returns the commands that run them."""
    cargo = ["cargo", "bench", "-p", "airlock-effects", "--bench", "workloads", "--no-run"]
    built = subprocess.run(
        cargo + ["--message-format=json"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    airlock = None
    for line in built.stdout.splitlines():
        if '"executable"' in line and "workloads" in line:
            airlock = re.search(r'"executable":"([^"]+)"', line)[1]
    if airlock is None:
        sys.exit("could not find the built `workloads` benchmark")
    target = ROOT / "target" / "handwritten"
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", HANDWRITTEN,
         "--target-dir", target],
        check=True,
    )
    return [airlock], [target / "release" / "airlock-handwritten-baseline"]


def python():
    """The reference's interpreter, with airlock-py installed."""
    py = VENV / "bin" / "python"
    if not py.exists():
        venv.create(VENV, with_pip=True)
        subprocess.run(
            [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", AIRLOCK_PY],
            check=True,
        )
    return [py, "-c", PY_DRIVER.format(dir=str(PY_BENCH.parent))]


def heap():
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "airlock-effects", "--bench", "heap"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def pin():
    """Pins this process, and so every side it starts, to its last core;
    returns the core and the cores it had."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None
    cores = os.sched_getaffinity(0)
    core = max(cores)
    os.sched_setaffinity(0, {core})
    return core, cores


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--rounds", type=int, default=3)
    args = args.parse_args()
    airlock, handwritten = build()
    py = python()

    # Every side runs on one core, the same one (children inherit this): a
    # process the scheduler moves between cores mid-trial loses its caches,
    # and on a shared host that hits whichever side it happens to.
    core, cores = pin()

    for _ in range(24):
        if os.getloadavg()[0] < IDLE:
            break
        time.sleep(5)
    load_before = os.getloadavg()
    rounds = {}
    for _ in range(args.rounds):
        for name in WORKLOADS:
            for side, cmd in (
                ("airlock", airlock + [name, str(TRIALS)]),
                ("handwritten", handwritten + [str(TRIALS), name]),
                ("python", py + [name, str(TRIALS)]),
            ):
                for row, ns in run(cmd).items():
                    key = {"python": "python"}.get(side) or (
                        "tuned" if row.startswith("mark/") else
                        "simple" if side == "handwritten" else "airlock"
                    )
                    if row.split("/")[-1] == name:
                        rounds.setdefault((name, key), []).append(ns)
    load_after = os.getloadavg()
    if cores is not None:
        os.sched_setaffinity(0, cores)

    def med(name, key):
        values = rounds.get((name, key))
        return statistics.median(values) if values else None

    rows = []
    for name in WORKLOADS:
        a, s, t, p = (med(name, k) for k in ("airlock", "simple", "tuned", "python"))
        rows.append((p / a, name, a, s, t, p))
    rows.sort()

    loaded = load_before[0] > IDLE or load_after[0] > LOADED
    pinned = f"; every side on core {core}" if core is not None else ""
    print(f"# {args.rounds} rounds x {TRIALS} trials per side, interleaved{pinned}; "
          "medians, ns/op")
    print(f"# load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}; after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if loaded:
        print(f"# UNDER LOAD (one-minute load above {IDLE} before or {LOADED} after): "
              "these ratios are not results")
    header = ("workload", "airlock", "simple", "tuned", "python", "py/airlock",
              "vs simple", "vs tuned")
    print(f"{header[0]:<24}" + "".join(f"{h:>11}" for h in header[1:]))

    def fmt(value, unit=""):
        return f"{'-':>11}" if value is None else f"{value:>{11 - len(unit)}.1f}{unit}"

    for ratio, name, a, s, t, p in rows:
        print(
            f"{name:<24}{fmt(a)}{fmt(s)}{fmt(t)}{fmt(p)}{fmt(ratio, 'x')}"
            f"{fmt(a / s if s else None, 'x')}{fmt(a / t if t else None, 'x')}"
        )
    print(f"slowest ratio: {rows[0][0]:.0f}x ({rows[0][1]})" + (" UNDER LOAD" if loaded else ""))
    print(heap())


if __name__ == "__main__":
    main()
