#!/usr/bin/env python3
"""manual/ (NumPy by hand) against torch_ref/ (torch.nn + torch.optim) on this machine's CPU.

    make bench                      # = .venv/bin/python benchmarks/bench.py   (~2 minutes)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench   # when those are set: they can slow NumPy
    .venv/bin/python benchmarks/bench.py --wait-idle 900       # on a shared machine: start when it is idle
    .venv/bin/python benchmarks/bench.py --quick               # a smoke run (~30 s), numbers rougher

What is timed, on the lecture's model (sigmoid hidden layers, softmax output, cross-entropy, plain SGD):

- ``loss+grad``: the training loop's forward pass, loss and gradients.  manual:
  ``FastPath(net).loss_and_gradients`` exactly as ``manual.train`` runs it; torch:
  ``zero_grad()``, ``model(X)``, the loss as ``torch_ref.train`` computes it, ``.item()``, ``backward()``.
- ``step``: the same plus the optimiser step (``opt.step(grads)`` / ``opt.step()``): one training step.
- ``gradients()``: manual's public API, ``net.gradients(X, y)`` (input checks, one-hot, new arrays),
  against the same torch ``loss+grad``.
- ``products`` (the two large networks): the step's matrix products alone, the same shapes on random
  operands (forward, back-propagation, dC/dW), ``np.matmul(out=)`` / ``torch.mm(out=)``: the limit a
  step of either library can approach; the rest of a step's time is its element-wise work.
- ``1000 epochs``: a whole iris run as the harness runs it, ``manual.train`` against ``torch_ref.train``:
  full batch, lr 0.2, the sample order given, train and validation accuracy after every epoch.
- ``GEMM``: a 1024 x 1024 x 1024 matrix product, ``np.matmul(out=)`` and ``torch.mm(out=)``: NumPy's
  is the limit ("peak") that the networks' GFLOP/s are measured against, round by round (each round
  times the GEMM right before the large network of its dtype; the % is the median over rounds).  A
  step's GFLOP are its matrix products only: forward 2n sum n_l n_{l-1}, dC/dW the same again, and
  the back-propagated (W^{l+1})^T delta^{l+1} for l >= 1 (neither side computes dC/dX of the input layer).

How it times, and why so: the two libraries never run in the same process.  NumPy's OpenBLAS worker
threads keep spinning after each BLAS call and take one of the two cores from whatever runs next in
that process (torch's 1024^3 step measured 1.6-1.9x slower right after NumPy steps; see
``benchmarks/interference.py``, which measures it).  So this driver starts two persistent worker
processes, one that imports only NumPy and ``manual`` and one that imports torch and ``torch_ref``,
and alternates short timing blocks between them (ABBA order, ``--gap`` seconds of idle in between so
that the other side's spinning threads have gone to sleep): the machine's speed drifts by up to 1.5x
over seconds to minutes, and blocks that are adjacent in time see the same drift, so each round's
manual/torch ratio cancels it.  Reported: the median over rounds of each block's median time, and the
median (min-max) of the per-round ratios.  Both libraries run with their default threads (2 here).
Every block starts from the initial weights (restored untimed), so both sides time the same steps.
Other work on the machine is not drift: torch's OpenMP threads slow down up to 100-fold when another
process takes a core.  So the driver counts, per round, the CPU time that processes other than its
own used (/proc/stat), drops rounds in which they used more than ``--max-others`` cores, and says so;
with ``--wait-idle`` it also waits for an idle machine before the run and before every round.

Peak memory: one fresh process per measurement (``--memory``).  It builds the network, warms the
libraries up with two steps on a throwaway copy of the network (code pages, thread pools, BLAS
buffers), frees it (``malloc_trim``), reads VmRSS, resets the high-water mark VmHWM to it by writing
5 to /proc/self/clear_refs, runs three steps on the measured network and reads VmHWM: "step peak" is
VmHWM minus that VmRSS, everything the steps allocated at once (the network's buffers and gradients,
torch's saved activations and .grad tensors, temporaries), as the kernel counts resident pages, so
allocations inside BLAS or torch count too (tracemalloc would miss them).  Without clear_refs it falls
back to getrusage's ru_maxrss without the warm-up, which also counts first-use code pages.

The OPENBLAS_* variables in the environment are passed on to the NumPy worker and printed; NumPy's
kernel and threading as threadpoolctl reports them are printed too.  Nothing here is part of the test
suite.  Exit status 0, or 1 with ``--strict`` when a target is missed.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    sizes: tuple
    batch: int
    dtype: str
    lr: float = 0.1

    @property
    def gemm_flop(self) -> float:
        """Floating-point operations of one step's matrix products (see the module docstring)."""
        prods = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        return 2.0 * self.batch * (2 * sum(prods) + sum(prods[1:]))


CASES = [
    Case("iris", "iris 4-6-3, n=120, float64", (4, 6, 3), 120, "float64", lr=0.2),
    Case("mnist", "784-256-10, n=128, float32", (784, 256, 10), 128, "float32"),
    Case("big32", "1024-1024-1024-10, n=512, float32", (1024, 1024, 1024, 10), 512, "float32"),
    Case("big64", "1024-1024-1024-10, n=512, float64", (1024, 1024, 1024, 10), 512, "float64"),
]
CASE = {c.key: c for c in CASES}
GEMM_N = 1024
MIN_REPS = 3  # per block: the median of three, also for the whole 1000-epoch runs
RUN_EPOCHS = 1000
WHATS = ("loss+grad", "step", "gradients()")
TARGETS = {  # (case, what): the targets, manual/torch time
    ("iris", "step"): 0.20,
    ("big32", "step"): 1.00,
    ("run", "1000 epochs"): 0.25,
}
GEMM_TARGET = 0.85  # big32 step >= 85 % of NumPy's GEMM peak
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---- the benchmarked functions, one set per side --------------------------------------------------
def _data(case: Case):
    """(X, y, X_val, y_val) as NumPy arrays: the iris split, or seeded random inputs and labels."""
    import numpy as np

    if case.key == "iris":
        from compare.data import iris_split

        s = iris_split(case.dtype)
        return s.X_train, s.y_train, s.X_test, s.y_test
    rng = np.random.default_rng(0)
    X = rng.standard_normal((case.batch, case.sizes[0])).astype(case.dtype)
    return X, rng.integers(0, case.sizes[-1], case.batch), None, None


def _weights(case: Case):
    """Shared initial weights, torch.nn.Linear's scheme, drawn without importing manual or torch."""
    import numpy as np

    rng = np.random.default_rng(0)
    w = {}
    for l, (fan_in, fan_out) in enumerate(zip(case.sizes[:-1], case.sizes[1:]), start=1):
        bound = 1.0 / math.sqrt(fan_in)
        w[f"W{l}"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(case.dtype)
        w[f"b{l}"] = rng.uniform(-bound, bound, fan_out).astype(case.dtype)
    return w


def numpy_functions(case: Case) -> dict:
    """name -> (prepare or None, fn, reset): fn(prepare()) is timed; reset() (untimed, before every block)
    puts the initial weights back, so that both sides time the same steps from the same state."""
    import numpy as np

    import manual

    w = _weights(case)
    X, y, Xv, yv = _data(case)
    net = manual.MLP.from_weights(w, "sigmoid", "softmax", "cross_entropy")
    opt = manual.make_optimizer("sgd", net.params, case.lr)
    Y = manual.one_hot(y, case.sizes[-1], net.dtype)
    fast = manual.FastPath(net)  # as manual.train's loop

    def loss_grad(_):
        loss, grads = fast.loss_and_gradients(X, Y, y)
        if not math.isfinite(loss):
            raise FloatingPointError(loss)
        return grads

    def step(_):
        opt.step(loss_grad(None))

    def reset():
        net.set_weights(w)

    fns = {"loss+grad": (None, loss_grad, reset), "step": (None, step, reset),
           "gradients()": (None, lambda _: net.gradients(X, y), reset)}
    if case.key == "iris":
        order = np.tile(np.arange(len(y)), (RUN_EPOCHS, 1))  # what the harness passes: canonical order
        fns["1000 epochs"] = (lambda: manual.MLP.from_weights(w, "sigmoid", "softmax", "cross_entropy"),
                              lambda n: manual.train(n, X, y, epochs=RUN_EPOCHS, lr=case.lr, order=order,
                                                     X_val=Xv, y_val=yv), lambda: None)
    return fns


def torch_functions(case: Case) -> dict:
    import numpy as np
    import torch

    import torch_ref

    w = _weights(case)
    X, y, Xv, yv = _data(case)
    model = torch_ref.from_shared(w, "sigmoid", "softmax")
    criterion = torch_ref.loss_fn("cross_entropy")
    opt = torch_ref.make_optimizer("sgd", model.parameters(), case.lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    model.train()

    def loss_grad(_):  # torch_ref.train's inner loop without the batch indexing
        opt.zero_grad()
        logits = model(Xt)
        c = criterion(logits, None, yt)  # cross-entropy on the logits: a^L is not needed
        value = c.item()
        if not math.isfinite(value):
            raise FloatingPointError(value)
        c.backward()

    def step(_):
        loss_grad(None)
        opt.step()

    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def reset():
        model.load_state_dict(initial)

    fns = {"loss+grad": (None, loss_grad, reset), "step": (None, step, reset), "gradients()": (None, loss_grad, reset)}
    if case.key == "iris":
        order = np.tile(np.arange(len(y)), (RUN_EPOCHS, 1))
        Xvt, yvt = torch.from_numpy(Xv), torch.from_numpy(yv)
        fns["1000 epochs"] = (lambda: torch_ref.from_shared(w, "sigmoid", "softmax"),
                              lambda m: torch_ref.train(m, Xt, yt, loss="cross_entropy", epochs=RUN_EPOCHS,
                                                        lr=case.lr, order=order, X_val=Xvt, y_val=yvt), lambda: None)
    return fns


def gemm_function(side: str, dtype: str):
    import numpy as np

    rng = np.random.default_rng(1)
    A, B = (rng.standard_normal((GEMM_N, GEMM_N)).astype(dtype) for _ in range(2))
    C = np.empty_like(A)
    if side == "numpy":
        return None, lambda _: np.matmul(A, B, out=C), lambda: None
    import torch

    At, Bt, Ct = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
    return None, lambda _: torch.mm(At, Bt, out=Ct), lambda: None


def products_function(side: str, case: Case):
    """The matrix products of one training step of ``case``, as manual.FastPath makes them (in
    their order; torch's autograd orders and transposes its own), on random operands of the same shapes:
    their values do not matter to the speed.  The bias column sums are left to the element-wise work."""
    import numpy as np

    rng = np.random.default_rng(2)
    w, L, n = _weights(case), len(case.sizes) - 1, case.batch
    A = [rng.standard_normal((n, case.sizes[l])).astype(case.dtype) for l in range(L)]             # a^{l-1}
    D = [None] + [rng.standard_normal((n, case.sizes[l])).astype(case.dtype) for l in range(1, L + 1)]  # delta^l
    W = [None] + [w[f"W{l}"] for l in range(1, L + 1)]
    if side == "numpy":
        mm, T = (lambda x, y, out: np.matmul(x, y, out=out)), (lambda x: x.T)  # noqa: E731
    else:
        import torch

        A, D, W = ([None if x is None else torch.from_numpy(x) for x in xs] for xs in (A, D, W))
        mm, T = (lambda x, y, out: torch.mm(x, y, out=out)), (lambda x: x.t())  # noqa: E731
    Z = [None] + [D[l] * 0 for l in range(1, L + 1)]    # outputs: z^l, then (W^{l+1})^T delta^{l+1}
    G = [None] + [W[l] * 0 for l in range(1, L + 1)]    # dC/dW^l

    def products(_):
        for l in range(1, L + 1):
            mm(A[l - 1], T(W[l]), Z[l])          # z^l = a^{l-1} (W^l)^T
        for l in range(L - 1, 0, -1):
            mm(D[l + 1], W[l + 1], Z[l])         # delta^{l+1} W^{l+1}
        for l in range(1, L + 1):
            mm(T(D[l]), A[l - 1], G[l])          # dC/dW^l = (delta^l)^T a^{l-1}
    return None, products, lambda: None


# ---- worker processes ------------------------------------------------------------------------------
def worker(side: str, manual_from: str | None) -> None:
    """Answers JSON requests on stdin, one per line: {"key": ..., "reps": k} -> per-rep seconds."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol on the pipe
    if manual_from:
        sys.path.insert(0, os.path.abspath(manual_from))
    import numpy  # noqa: F401

    if side == "numpy":
        import manual  # noqa: F401
    else:
        import torch  # noqa: F401

        import torch_ref  # noqa: F401
    info = side_info(side)  # before the iris data loads scikit-learn, whose SciPy brings a second OpenBLAS
    fns = {}
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
                    case_key, what = name.split("/", 1)
                    make = numpy_functions if side == "numpy" else torch_functions
                    fns.update({f"net:{case_key}/{w}": f for w, f in make(CASE[case_key]).items()})
            prepare, fn, reset = fns[key]
            reset()
            times = []
            gc.collect()
            gc.disable()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            try:
                for _ in range(req["reps"]):
                    arg = prepare() if prepare is not None else None
                    t0 = time.perf_counter()
                    fn(arg)
                    times.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            reply = {"times": times, "faults": faults / req["reps"]}  # minor page faults per call
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    if side == "numpy":
        assert "torch" not in sys.modules, "the NumPy worker imported torch"


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
    return info


class Worker:
    def __init__(self, side: str, manual_from: str | None):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", side]
        if manual_from:
            cmd += ["--manual-from", manual_from]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker died (see its error above)")
        return json.loads(line)

    def cpu_seconds(self) -> float:
        return _proc_cpu_seconds(self.proc.pid)

    def close(self):
        try:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def _proc_cpu_seconds(pid) -> float:
    """user + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (busy time of /proc/stat's cpu line)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return 0.0


# ---- peak memory, in a fresh process per measurement ------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory(side: str, case_key: str, manual_from: str | None) -> dict:
    """Peak resident memory of three training steps (see the module docstring), in KiB."""
    if manual_from:
        sys.path.insert(0, os.path.abspath(manual_from))
    case = CASE[case_key]
    make = numpy_functions if side == "numpy" else torch_functions
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


def run_memory(side: str, case_key: str, manual_from: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--memory", side, case_key]
    if manual_from:
        cmd += ["--manual-from", manual_from]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the driver --------------------------------------------------------------------------------------
def timing_plan(args) -> list[str]:
    """The order of one round.  Each dtype's GEMM block comes right before the large network of that
    dtype, so that the % of GEMM peak compares blocks a second apart, not ten."""
    keys, gemm_done = [], set()
    for case in CASES:
        if case.key not in args.cases:
            continue
        if case.key.startswith("big") and case.dtype not in gemm_done:
            keys.append(f"gemm:{case.dtype}")
            gemm_done.add(case.dtype)
        keys += [f"net:{case.key}/{w}" for w in WHATS]
        if case.key.startswith("big"):
            keys.append(f"prod:{case.key}")
        if case.key == "iris" and not args.no_run:
            keys.append("net:iris/1000 epochs")
    keys += [f"gemm:{dt}" for dt in ("float32", "float64") if dt not in gemm_done]
    return keys


def calibrate(worker: Worker, key: str, block_s: float) -> int:
    """Reps per block so that a block takes about block_s (at least MIN_REPS); also warms the key up."""
    t = min(worker.ask(cmd="time", key=key, reps=1)["times"] + worker.ask(cmd="time", key=key, reps=1)["times"])
    reps = 1
    while reps * t < block_s / 4 and reps < 100000:  # a short pre-block, then the estimate from it
        reps *= 4
    if reps > 1:
        t = statistics.median(worker.ask(cmd="time", key=key, reps=reps)["times"])
    return max(MIN_REPS, min(100000, int(block_s / t)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--block", type=float, default=0.2, help="seconds per timing block (default 0.2)")
    ap.add_argument("--gap", type=float, default=0.12,
                    help="idle seconds before each block, so that the other side's BLAS/OpenMP threads have "
                         "stopped spinning (OpenBLAS: 2^28 cycles, ~0.1 s; default 0.12)")
    ap.add_argument("--max-others", type=float, default=0.2, metavar="CORES",
                    help="drop rounds during which other processes used more than this many cores "
                         "(default 0.2; if every round is over it, all are kept and a warning says so)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before the run and before every round, wait (up to this long in all) for 5 s in "
                         "which other processes use < 0.1 cores")
    ap.add_argument("--cases", nargs="+", default=[c.key for c in CASES], choices=[c.key for c in CASES])
    ap.add_argument("--no-run", action="store_true", help="skip the 1000-epoch iris runs")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 0.08 s blocks: a smoke run")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--manual-from", help="import manual from this checkout instead (before/after comparisons)")
    ap.add_argument("--markdown", nargs="+", metavar="JSON",
                    help="print the README's tables from the --json files of runs (the last one in full)")
    ap.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.manual_from)
        return 0
    if args.memory:
        print(json.dumps(memory(*args.memory, args.manual_from)))
        return 0
    if args.markdown:
        print(markdown([json.load(open(p)) for p in args.markdown]))
        return 0
    if args.quick:
        args.rounds, args.block = 3, 0.08
    if args.wait_idle:
        wait_idle(args.wait_idle)
    return drive(args)


def wait_idle(limit: float, ours=lambda: 0.0, window: float = 5.0, threshold: float = 0.1) -> float:
    """Wait (at most ``limit`` s) for ``window`` s in which processes other than ours (``ours()``: our CPU
    seconds so far) use < ``threshold`` cores.  Returns the seconds waited."""
    t0 = time.time()
    while True:
        b0, o0 = _machine_busy_seconds(), ours()
        time.sleep(window)
        busy = max(0.0, _machine_busy_seconds() - b0 - (ours() - o0)) / window
        if busy < threshold:
            return time.time() - t0
        if time.time() - t0 > limit:
            print(f"the machine did not become idle within {limit:.0f} s (other processes use {busy:.2f} cores); "
                  "measuring anyway", flush=True)
            return time.time() - t0
        print(f"waiting for an idle machine (other processes use {busy:.2f} cores) ...", flush=True)


def drive(args) -> int:
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    env = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    print(f"backprop-crosscheck benchmark, {started:%Y-%m-%d %H:%M %Z}, {platform.node()}")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if k in env:
            print(f"WARNING: {k}={env[k]} is set; it can slow NumPy.  For a benchmark run: "
                  f"env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench")
    workers = {side: Worker(side, args.manual_from) for side in ("numpy", "torch")}
    try:
        info = {side: w.ask(cmd="info") for side, w in workers.items()}
        print_environment(info, env, load0)
        keys = timing_plan(args)
        print(f"\ncalibrating and warming up {len(keys)} timings on both sides ...", flush=True)
        reps = {(side, k): calibrate(w, k, args.block) for k in keys for side, w in workers.items()}
        rounds = []  # per round: {(side, key): block median}, and the CPU other processes used meanwhile
        t0 = time.time()
        ours = lambda: _proc_cpu_seconds(os.getpid()) + sum(w.cpu_seconds() for w in workers.values())  # noqa: E731
        waited = 0.0
        for r in range(args.rounds):
            if args.wait_idle:  # every round starts on an idle machine, within the --wait-idle budget
                waited += wait_idle(max(0.0, args.wait_idle - waited), ours)
            ours0 = ours()
            busy0, r0 = _machine_busy_seconds(), time.time()
            got = {}
            for k in keys:
                order = ("numpy", "torch") if r % 2 == 0 else ("torch", "numpy")  # ABBA: no side always first
                for side in order:
                    time.sleep(args.gap)
                    reply = workers[side].ask(cmd="time", key=k, reps=reps[side, k])
                    got[side, k] = (statistics.median(reply["times"]), reply["faults"])
            others = max(0.0, _machine_busy_seconds() - busy0 - (ours() - ours0)) / (time.time() - r0)
            rounds.append({"blocks": got, "others_cores": others})
            print(f"  round {r + 1}/{args.rounds} done ({time.time() - t0:.0f} s)"
                  + (f"  other processes used {others:.2f} cores: round dropped" if others > args.max_others else ""),
                  flush=True)
    finally:
        for w in workers.values():
            w.close()
    mem = {}
    if not args.no_memory:
        print("measuring peak memory, one fresh process per measurement ...", flush=True)
        for case in CASES:
            if case.key in args.cases:
                for side in ("numpy", "torch"):
                    mem[side, case.key] = run_memory(side, case.key, args.manual_from)
    load1 = os.getloadavg()
    clean = [r for r in rounds if r["others_cores"] <= args.max_others]
    used = clean if clean else rounds
    blocks = {(side, k): [r["blocks"][side, k][0] for r in used] for side in ("numpy", "torch") for k in keys}
    faults = {(side, k): statistics.median(r["blocks"][side, k][1] for r in used)
              for side in ("numpy", "torch") for k in keys}
    result = summarise(args, keys, blocks, reps, mem, info, env, started, load0, load1, faults)
    result["contention"] = {"others_cores_per_round": [r["others_cores"] for r in rounds],
                            "rounds_used": len(used), "rounds_dropped": len(rounds) - len(clean),
                            "all_contended": not clean}
    missed = print_results(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if (missed and args.strict) else 0


def print_environment(info, env, load0):
    npi, thi = info["numpy"], info["torch"]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average {load0[0]:.2f} "
          f"(anything else running distorts the numbers)")
    print(f"NumPy {npi['numpy']}; torch {thi.get('torch')} ({thi.get('torch_blas')}, "
          f"{thi.get('torch_threads')} threads, CPU capability {thi.get('torch_cpu_capability')})")
    print(f"environment: {env or 'no OPENBLAS_*/OMP_*/MKL_* variables set'}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _ratio_stats(a, b):
    r = sorted(x / y for x, y in zip(a, b))
    return statistics.median(r), r[0], r[-1]


def best_gemm_pct(res: dict, key: str = "net:big32/step") -> tuple[float, float] | None:
    """(%, GFLOP/s): the manual row ``key``'s median GFLOP/s against the fastest NumPy GEMM block of the run.
    Not a target, a cross-check of one: the GEMM slows down in some phases of a shared machine (up to 2x
    here) while a step barely does, and then the per-round % of the median GEMM reads high."""
    by = {r["key"]: r for r in res["rows"]}
    if key not in by or f"gemm:{by[key]['dtype']}" not in by:
        return None
    fastest = 2 * GEMM_N ** 3 / min(by[f"gemm:{by[key]['dtype']}"]["manual_blocks"]) / 1e9
    return 100 * by[key]["manual_gflops"] / fastest, fastest


def summarise(args, keys, blocks, reps, mem, info, env, started, load0, load1, faults) -> dict:
    med = {k: statistics.median(v) for k, v in blocks.items()}
    peak = {dt: 2 * GEMM_N ** 3 / med["numpy", f"gemm:{dt}"] / 1e9 for dt in ("float32", "float64")}
    rows = []
    for k in keys:
        kind, name = k.split(":", 1)
        m, t = med["numpy", k], med["torch", k]
        ratio, lo, hi = _ratio_stats(blocks["numpy", k], blocks["torch", k])
        row = {"key": k, "manual_s": m, "torch_s": t, "ratio": ratio, "ratio_min": lo, "ratio_max": hi,
               "manual_blocks": blocks["numpy", k], "torch_blocks": blocks["torch", k],
               "reps": [reps["numpy", k], reps["torch", k]],
               "faults_per_call": [faults["numpy", k], faults["torch", k]]}
        if kind == "gemm":
            row.update(case="GEMM 1024^3 " + name, what="matmul", manual_gflops=2 * GEMM_N ** 3 / m / 1e9,
                       torch_gflops=2 * GEMM_N ** 3 / t / 1e9, dtype=name)
        else:
            case_key, what = name.split("/", 1) if kind == "net" else (name, "products")
            case = CASE[case_key]
            row.update(case=case.label, what=what, dtype=case.dtype)
            if what != "1000 epochs":
                row.update(manual_gflops=case.gemm_flop / m / 1e9, torch_gflops=case.gemm_flop / t / 1e9)
        if "manual_gflops" in row:  # per round against that round's GEMM block, then the median over rounds
            flop = 2 * GEMM_N ** 3 if kind == "gemm" else CASE[name.split("/")[0]].gemm_flop
            gemm = blocks["numpy", f"gemm:{row['dtype']}"]
            for side in ("numpy", "torch"):
                pct = [100 * (flop / t) / (2 * GEMM_N ** 3 / g) for t, g in zip(blocks[side, k], gemm)]
                row[("manual" if side == "numpy" else "torch") + "_peak_pct"] = statistics.median(pct)
        rows.append(row)
    targets = []
    by = {r["key"]: r for r in rows}
    for (case_key, what), limit in TARGETS.items():
        key = "net:iris/1000 epochs" if case_key == "run" else f"net:{case_key}/{what}"
        if key in by:
            r = by[key]
            targets.append({"what": f"{r['case']}, {r['what']}: manual/torch time <= {limit:.2f}",
                            "value": f"{r['ratio']:.3f}", "met": r["ratio"] <= limit})
    if "net:big32/step" in by:
        r = by["net:big32/step"]
        targets.append({"what": f"{r['case']}, step: >= {GEMM_TARGET:.0%} of NumPy's GEMM peak",
                        "value": f"{r['manual_peak_pct']:.1f} %", "met": r["manual_peak_pct"] >= 100 * GEMM_TARGET})
    if ("numpy", "big32") in mem:
        m, t = mem["numpy", "big32"]["step_peak_kib"], mem["torch", "big32"]["step_peak_kib"]
        targets.append({"what": f"{CASE['big32'].label}, step: peak memory manual <= torch",
                        "value": f"{m / 1024:.1f} MiB vs {t / 1024:.1f} MiB", "met": m <= t})
    return {"date": started.isoformat(timespec="seconds"), "host": platform.node(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "load_avg_start": load0, "load_avg_end": load1, "env": env,
            "rounds": args.rounds, "block_s": args.block, "gap_s": args.gap, "manual_from": args.manual_from,
            "max_others": args.max_others,
            "gemm_peak_gflops": peak, "info": info, "rows": rows,
            "memory": {f"{s}/{c}": v for (s, c), v in mem.items()}, "targets": targets}


def _t(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def markdown(runs: list[dict]) -> str:
    """The targets of each run side by side, then the last run's whole table (README format)."""
    out = ["| target | " + " | ".join(f"run {i + 1} ({r['date'][:16].replace('T', ' ')})" for i, r in enumerate(runs))
           + " |", "| --- |" + " --- |" * len(runs)]
    for i, t in enumerate(runs[0]["targets"]):
        cells = [f"{r['targets'][i]['value']} {'met' if r['targets'][i]['met'] else '**missed**'}" for r in runs]
        out.append(f"| {t['what']} | " + " | ".join(cells) + " |")
    best = [best_gemm_pct(r) for r in runs]
    if all(best):
        out.append("| (not a target) the same step against the run's fastest GEMM block | "
                   + " | ".join(f"{p:.1f} % of {g:.0f} GFLOP/s" for p, g in best) + " |")
    last = runs[-1]
    pk = last["gemm_peak_gflops"]
    out += ["", f"Run {len(runs)} in full (NumPy GEMM peak {pk['float32']:.0f} GFLOP/s float32, "
            f"{pk['float64']:.0f} float64; {last['contention']['rounds_used']} rounds):", "",
            "| case | what | manual | torch | manual/torch (min-max) | manual GFLOP/s (% of peak) | torch GFLOP/s (% of peak) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in last["rows"]:
        g = lambda side: (f"{r[side + '_gflops']:.1f} ({r[side + '_peak_pct']:.0f} %)"  # noqa: E731
                          if f"{side}_gflops" in r else "")
        out.append(f"| {r['case']} | {r['what']} | {_t(r['manual_s'])} | {_t(r['torch_s'])} | "
                   f"{r['ratio']:.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {g('manual')} | {g('torch')} |")
    if last["memory"]:
        out += ["", "| peak memory of a training step | manual | torch |", "| --- | ---: | ---: |"]
        for case in CASES:
            m, t = last["memory"].get(f"numpy/{case.key}"), last["memory"].get(f"torch/{case.key}")
            if m and t:
                out.append(f"| {case.label} | {m['step_peak_kib'] / 1024:.1f} MiB | {t['step_peak_kib'] / 1024:.1f} MiB |")
    return "\n".join(out)


def print_results(res: dict) -> list:
    print()
    npi = res["info"]["numpy"]["threadpools"]
    if isinstance(npi, str):
        print("NumPy BLAS:", npi)
    else:
        for p in npi:
            print(f"NumPy worker thread pool: {p['internal_api']} {p['version']}, kernel {p.get('architecture')}, "
                  f"{p['threading_layer']}, {p['num_threads']} threads ({os.path.basename(p['filepath'] or '')})")
    thp, th = res["info"]["torch"]["threadpools"], res["info"]["torch"]
    omp = [p for p in thp if p["internal_api"] == "openmp"] if not isinstance(thp, str) else []
    print(f"torch worker: {th.get('torch_blas')} (linked into torch), "
          + ", ".join(f"OpenMP {os.path.basename(p['filepath'] or '')} {p['num_threads']} threads" for p in omp)
          + f"; torch.get_num_threads() = {th.get('torch_threads')}")
    pk = res["gemm_peak_gflops"]
    print(f"GEMM peak (NumPy, 1024^3): {pk['float32']:.1f} GFLOP/s float32, {pk['float64']:.1f} GFLOP/s float64")
    print(f"{res['contention']['rounds_used']} interleaved rounds, {res['block_s']} s blocks, {res['gap_s']} s gaps; medians; "
          f"ratio = median (min-max) of the per-round manual/torch ratios; % = median over rounds of the GFLOP/s as a share of the same round's NumPy GEMM\n")
    head = (f"{'case':36s} {'what':12s} {'manual':>10s} {'torch':>10s}  {'manual/torch':>20s}  {'manual GFLOP/s':>17s}"
            f"  {'torch GFLOP/s':>17s}  {'page faults/call':>16s}")
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        g = lambda side: (f"{r[side + '_gflops']:7.1f} ({r[side + '_peak_pct']:4.0f} %)"  # noqa: E731
                          if f"{side}_gflops" in r else "")
        print(f"{r['case']:36s} {r['what']:12s} {_t(r['manual_s']):>10s} {_t(r['torch_s']):>10s}  "
              f"{r['ratio']:6.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})  {g('manual'):>17s}  {g('torch'):>17s}"
              f"  {r['faults_per_call'][0]:7.0f} {r['faults_per_call'][1]:7.0f}")
    if res["memory"]:
        print("\npeak memory of a training step (fresh process each; VmHWM above VmRSS before the steps):")
        print(f"{'case':36s} {'manual':>10s} {'torch':>10s}  {'manual/torch':>12s}   kept between steps (manual / torch)")
        for case in CASES:
            m, t = res["memory"].get(f"numpy/{case.key}"), res["memory"].get(f"torch/{case.key}")
            if m and t:
                ratio = f"{m['step_peak_kib'] / t['step_peak_kib']:.2f}" if t["step_peak_kib"] else "-"
                print(f"{case.label:36s} {m['step_peak_kib'] / 1024:7.1f} MiB {t['step_peak_kib'] / 1024:6.1f} MiB  "
                      f"{ratio:>12s}   {m['kept_kib'] / 1024:.1f} / {t['kept_kib'] / 1024:.1f} MiB")
        methods = {v["method"] for v in res["memory"].values()}
        print("method:", "; ".join(sorted(methods)))
    print("\ntargets:")
    missed = []
    for t in res["targets"]:
        print(f"  {'met   ' if t['met'] else 'MISSED'}  {t['what']}: {t['value']}")
        if not t["met"]:
            missed.append(t)
    best = best_gemm_pct(res)
    if best:
        print(f"  (not a target: the same step against the run's fastest GEMM block, {best[1]:.1f} GFLOP/s: "
              f"{best[0]:.1f} %)")
    c = res["contention"]
    per_round = ", ".join(f"{x:.2f}" for x in c["others_cores_per_round"])
    print(f"\nother processes' CPU use per round, in cores: {per_round}; rounds used {c['rounds_used']}, "
          f"dropped {c['rounds_dropped']} (> {res['max_others']} cores)")
    if c["all_contended"]:
        print("WARNING: every round ran beside other work; these numbers are not a measurement of this "
              "machine. Rerun when it is idle (--wait-idle).")
    return missed


if __name__ == "__main__":
    sys.exit(main())
