#!/usr/bin/env python3
"""Why bench.py times NumPy and torch in two processes with idle gaps: the measurement.

    .venv/bin/python benchmarks/interference.py        # ~1 minute

The 1024-1024-1024-10 float32 training step of each side, timed in blocks of a few steps:

- ``same process``: one process runs both libraries (what "one process, interleaved" would mean):
  a torch block after 1 s of idle against one right after a NumPy block, and the other way round.
- ``same process, OPENBLAS_THREAD_TIMEOUT=4``: the same with OpenBLAS's worker threads told to go
  to sleep after 2^4 cycles instead of spinning (the variable must be set before NumPy loads).
- ``two processes, no gap`` / ``0.15 s gap``: bench.py's persistent workers, each block started right
  after the other side's block ended, or after ``--gap`` seconds of idle.

A slowdown well above 1.00 means that one library's idle-but-spinning threads steal a core from
the other.  Run it on an idle machine.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402, F401  (puts benchmarks/ and the repository on sys.path)
import cases  # noqa: E402
from worker import ROOT, Worker  # noqa: E402

ROUNDS, REPS, IDLE = 7, 3, 1.0


def _block(fn, reps=REPS):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(None)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def same_process() -> dict:
    """Runs in a child process (so that the environment applies before NumPy loads)."""
    case = cases.CASE["big32"]
    np_step = cases.numpy_functions(case)["step"][1]
    th_step = cases.torch_functions(case)["step"][1]
    np_step(None), th_step(None)
    out = {"torch idle": [], "torch after numpy": [], "numpy idle": [], "numpy after torch": []}
    for _ in range(ROUNDS):
        time.sleep(IDLE)
        out["torch idle"].append(_block(th_step))
        _block(np_step)
        out["torch after numpy"].append(_block(th_step))
        time.sleep(IDLE)
        out["numpy idle"].append(_block(np_step))
        _block(th_step)
        out["numpy after torch"].append(_block(np_step))
    return {k: statistics.median(v) for k, v in out.items()}


def two_processes(gap: float) -> dict:
    workers = {side: Worker(side) for side in ("numpy", "torch")}
    key = "net:big32/step"
    try:
        for w in workers.values():
            w.ask(cmd="time", key=key, reps=2)
        out = {"torch idle": [], "torch after numpy": [], "numpy idle": [], "numpy after torch": []}
        for _ in range(ROUNDS):
            for first, second in (("numpy", "torch"), ("torch", "numpy")):
                time.sleep(IDLE)
                idle = workers[second].ask(cmd="time", key=key, reps=REPS)["times"]
                out[f"{second} idle"].append(statistics.median(idle))
                workers[first].ask(cmd="time", key=key, reps=REPS)
                time.sleep(gap)
                out[f"{second} after {first}"].append(
                    statistics.median(workers[second].ask(cmd="time", key=key, reps=REPS)["times"]))
    finally:
        for w in workers.values():
            w.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main():
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(same_process()))
        return
    print(f"load average {os.getloadavg()[0]:.2f} (run this on an idle machine)")
    results = {}
    for label, extra in (("same process", {}), ("same process, OPENBLAS_THREAD_TIMEOUT=4",
                                                  {"OPENBLAS_THREAD_TIMEOUT": "4"})):
        env = {**os.environ, **extra}
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    for gap in (0.0, 0.15):
        results[f"two processes, {'no gap' if gap == 0 else f'{gap} s gap'}"] = two_processes(gap)
    print(f"\n1024-1024-1024-10 float32 training step, medians of {ROUNDS} blocks of {REPS} steps")
    print(f"{'setting':42s} {'torch idle':>11s} {'after NumPy':>12s} {'slowdown':>9s}   "
          f"{'NumPy idle':>11s} {'after torch':>12s} {'slowdown':>9s}")
    for label, r in results.items():
        print(f"{label:42s} {r['torch idle'] * 1e3:8.1f} ms {r['torch after numpy'] * 1e3:9.1f} ms "
              f"{r['torch after numpy'] / r['torch idle']:8.2f}x   {r['numpy idle'] * 1e3:8.1f} ms "
              f"{r['numpy after torch'] * 1e3:9.1f} ms {r['numpy after torch'] / r['numpy idle']:8.2f}x")


if __name__ == "__main__":
    main()
