"""The worker processes: one per library, each importing only its own library (and NumPy).

The driver talks to each worker over a pipe, one JSON request a line: ``{"cmd": "info"}``,
``{"cmd": "time", "key": ..., "reps": k}`` -> per-call seconds, ``{"cmd": "quit"}``.  Peak memory is
measured in a fresh process per (side, case) instead (``memory``).  A worker whose library is not
installed answers ``info`` with ``{"unavailable": "not installed"}`` and nothing else (the JAX column).
"""
from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time

from cases import CASE, functions, gemm_function, products_function
from monitor import proc_cpu_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks", "bench.py")  # the entry point, run with --worker / --memory


def _import_side(side: str) -> None:
    """The side's library, or ImportError (the JAX side only may be missing)."""
    import numpy  # noqa: F401

    if side == "numpy":
        import manual  # noqa: F401
    elif side == "torch":
        import torch  # noqa: F401

        import torch_ref  # noqa: F401
    else:
        import cases_jax  # noqa: F401  (imports jax_ref, which raises ModuleNotFoundError without JAX)


def worker(side: str) -> None:
    """Answers the driver's requests on stdin (see the module docstring)."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol on the pipe
    try:
        _import_side(side)
        info = side_info(side)  # before the iris data loads scikit-learn, whose SciPy brings a second OpenBLAS
    except ImportError as e:
        if side != "jax":
            raise
        info = {"unavailable": "not installed", "error": str(e)}
    fns, first = {}, set()
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        if req["cmd"] == "info":
            reply = info
        else:
            key = req["key"]
            if key not in fns:
                kind, name = key.split(":", 1)
                if kind == "gemm":
                    fns[key] = gemm_function(side, name)
                elif kind == "prod":
                    fns[key] = products_function(side, CASE[name])
                else:
                    case_key = name.split("/", 1)[0]
                    fns.update({f"net:{case_key}/{w}": f for w, f in functions(side, CASE[case_key]).items()})
            reply = time_block(*fns[key], req["reps"])
            if key not in first:  # the key's very first call: JAX compiles then (and every side warms up)
                first.add(key)
                reply["first_call_s"] = reply["times"][0]
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    if side != "torch":
        assert "torch" not in sys.modules, f"the {side} worker imported torch"
    if side == "jax":
        assert "manual" not in sys.modules, "the JAX worker imported manual"


def time_block(prepare, fn, reset, reps: int) -> dict:
    reset()
    times = []
    gc.collect()
    gc.disable()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    try:
        for _ in range(reps):
            arg = prepare() if prepare is not None else None
            t0 = time.perf_counter()
            fn(arg)
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"times": times, "faults": faults / reps}  # minor page faults per call


def side_info(side: str) -> dict:
    import numpy as np

    info = {"numpy": np.__version__, "pid": os.getpid(), "torch_imported": "torch" in sys.modules}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                                      "threading_layer", "num_threads", "filepath")}
                               for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl is not installed (pip install threadpoolctl)"
    if side == "torch":
        import torch

        cfg = torch.__config__.show()
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    torch_blas=next((ln.strip(" -") for ln in cfg.splitlines() if "Math Kernel" in ln
                                     or "OpenBLAS" in ln), "?"),
                    torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    if side == "jax":
        import cases_jax

        info.update(cases_jax.info())
    return info


class Worker:
    def __init__(self, side: str):
        self.side = side
        self.proc = subprocess.Popen([sys.executable, BENCH, "--worker", side], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker died (see its error above)")
        return json.loads(line)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def close(self):
        try:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)




# ---- peak memory, in a fresh process per measurement ------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory(side: str, case_key: str) -> dict:
    """Peak resident memory of three training steps (method: docs/benchmarks.md), in KiB.  It builds the
    network, warms the library up with two steps on a throwaway copy (code pages, thread pools, BLAS
    buffers; JAX's compilation), frees it (malloc_trim), reads VmRSS, resets the high-water mark VmHWM to
    it (/proc/self/clear_refs), runs three steps on the measured network and reads VmHWM."""
    _import_side(side)
    case = CASE[case_key]
    make = lambda c: functions(side, c)  # noqa: E731
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM reset by /proc/self/clear_refs"
    except OSError:
        method = None
    if method:
        _, warm, _ = make(case)["step"]  # a throwaway network: libraries, threads and BLAS buffers warmed up
        warm(None)
        warm(None)
        del warm
    _, step, _ = make(case)["step"]
    gc.collect()
    if method:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)  # return what the warm-up freed, so it is not reused unseen
        except OSError:
            pass
    rss0 = _status_kib("VmRSS")
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    for _ in range(3):
        step(None)
    if method:
        peak = _status_kib("VmHWM") - rss0
    else:
        method = "ru_maxrss (no clear_refs: first-use code pages included, lower bound when imports peaked higher)"
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max(rss0, maxrss0))
    return {"step_peak_kib": peak, "kept_kib": _status_kib("VmRSS") - rss0, "method": method,
            "torch_imported": "torch" in sys.modules}


def run_memory(side: str, case_key: str) -> dict:
    out = subprocess.run([sys.executable, BENCH, "--memory", side, case_key], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

