#!/usr/bin/env python3
"""Envoy benchmark of callback-guard: `make bench` (writes BENCHMARKS.md) or
`make bench BENCH_QUICK=1` (a few seconds per scenario, writes
target/bench/BENCHMARKS.quick.md). `python3 bench/run.py --help` for the
knobs; the harness is the package bench/cgbench/ (standard library only).
"""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cgbench.main import entry  # noqa: E402

if __name__ == "__main__":
    entry()
