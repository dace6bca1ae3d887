#!/usr/bin/env python3
"""manual/ (NumPy by hand) against torch_ref/ (torch.nn + torch.optim) and jax_ref/ (jitted JAX) on this
machine's CPU: the entry point.

    make bench                      # = .venv/bin/python benchmarks/bench.py   (some minutes; more with JAX)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench   # when those are set: they can slow NumPy
    .venv/bin/python benchmarks/bench.py --wait-idle 900       # on a shared machine: start when it is idle
    .venv/bin/python benchmarks/bench.py --quick               # a smoke run, numbers rougher
    .venv/bin/python benchmarks/bench.py --markdown a.json b.json   # the README's tables from --json files

What is timed and how, and why so (each library in its own worker process, interleaved blocks, rounds
with other processes' CPU use dropped, peak memory in fresh processes): docs/benchmarks.md.  The code:

    driver.py     command line, worker processes, interleaved rounds, summary, targets, JSON
    monitor.py    other processes' CPU use, waiting for an idle machine, the CPU's name
    worker.py     the worker processes (timing blocks) and the peak-memory processes
    cases.py      the cases and what is timed in manual and torch (and the operands of GEMM and products)
    cases_jax.py  what is timed in JAX (imported by the JAX worker only)
    render.py     the console table and the README's markdown

Nothing here is part of the test suite.  Exit status 0, or 1 with ``--strict`` when a target is missed.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (HERE, os.path.dirname(HERE)) if p not in sys.path]  # benchmarks/, the repository

from driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
