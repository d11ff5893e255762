#!/usr/bin/env python3
"""Runs the Python reference benchmark and airlock's Rust benchmark in one go
and prints, per workload, Rust ns/op, Python ns/op and the ratio.

    python3 bench/compare.py            # 9 trials each
    python3 bench/compare.py 15         # 15 trials each

It installs airlock-py (the version the reference pins) into a temporary
virtualenv, so it needs network access to PyPI, and it reads the reference
script from ../shared/bench/airlock-py (or $AIRLOCK_PY_BENCH).
"""

import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(
    os.environ.get(
        "AIRLOCK_PY_BENCH", ROOT.parent / "shared" / "bench" / "airlock-py" / "bench_airlock.py"
    )
)
AIRLOCK_PY = "airlock-py==0.1.0a3"
LINE = re.compile(r"^(\w+): ([0-9.]+) (ns/op|bytes/intent)$")
# glibc returns freed memory to the OS at the end of every trial, and the next
# trial pays a page fault for every page it touches again: on a VM that costs
# more than airlock's own work. A long-running service keeps its heap warm;
# these tunables make the benchmark do the same. Both columns are reported.
WARM_HEAP = "glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=4294967295"


def parse(output):
    return {m[1]: float(m[2]) for m in map(LINE.match, output.splitlines()) if m}


def run_python(trials):
    with tempfile.TemporaryDirectory(prefix="airlock-py-") as tmp:
        venv.create(tmp, with_pip=True)
        py = Path(tmp) / "bin" / "python"
        subprocess.run(
            [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", AIRLOCK_PY],
            check=True,
        )
        out = subprocess.run(
            [py, REFERENCE, str(trials)], check=True, capture_output=True, text=True
        )
        return parse(out.stdout)


def cargo_bench(name, *args, env=None):
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "airlock-effects", "--bench", name, "--", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return parse(out.stdout)


def run_rust(trials):
    cold = cargo_bench("workloads", str(trials))
    warm = cargo_bench("workloads", str(trials), env={"GLIBC_TUNABLES": WARM_HEAP})
    return cold, warm, cargo_bench("heap")


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    if not REFERENCE.is_file():
        sys.exit(f"reference benchmark not found at {REFERENCE}: set AIRLOCK_PY_BENCH")
    print(f"# {trials} trials each; medians in ns/op; ratio = Python / Rust", flush=True)
    cold, warm, heap = run_rust(trials)
    python = run_python(trials)
    print(f"{'workload':<24}{'rust':>9}{'warm heap':>11}{'python':>10}{'ratio':>8}{'warm':>8}")
    worst = None
    for name, py_ns in python.items():
        ratio, ratio_warm = py_ns / cold[name], py_ns / warm[name]
        worst = ratio if worst is None else min(worst, ratio)
        print(
            f"{name:<24}{cold[name]:>9.1f}{warm[name]:>11.1f}{py_ns:>10.1f}"
            f"{ratio:>7.0f}x{ratio_warm:>7.0f}x"
        )
    floor = "floor_box_push"
    print(f"{floor:<24}{cold[floor]:>9.1f}{warm[floor]:>11.1f}")
    print(
        f"enqueue / floor: {cold['enqueue_dropall'] / cold[floor]:.2f}x "
        f"(warm heap {warm['enqueue_dropall'] / warm[floor]:.2f}x)"
    )
    print(f"heap per buffered two-field intent: {heap['heap_per_intent']:.1f} bytes")
    print(f"slowest ratio (default heap): {worst:.0f}x")


if __name__ == "__main__":
    main()
