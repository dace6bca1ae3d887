"""Up-front checks of what a run would take, so that an impossible run is refused with one line (exit 2)
before it starts instead of ending in a MemoryError, an OverflowError or a cascade of RuntimeWarnings.

- ``seed_arg``: --seed is an integer in 0 .. 2**64 - 1 (numpy's and torch's generators both take it).
- ``check_run_size``: the memory rule below.
- ``check_initial_forward``: the initial forward pass (and loss, and gradients) fit the run's dtype.
- ``preflight``: all of these for a Spec, and a --weights file read (bounded) and checked against the spec.

The memory rule (``run_bytes``): a run keeps the trajectory's per-step record, STEP_RECORD_BYTES x
tensors x (steps + 1) (twice that when the report's companion runs beside it), the two runs a small
trajectory keeps (18 bytes x parameters x steps, where that is at most lockstep.SEQUENTIAL_BYTES), the
sample order (8 bytes x training rows x epochs) and a working set of parameters, gradients, optimiser
state and activations of the four runs (8 bytes x (24 x parameters + 16 x training rows x units)), the
training rows being the data's (spec.n_train: 120 for iris).  A run whose estimate exceeds half of this
machine's physical memory (os.sysconf) is refused, naming the option(s) to lower and the estimate in GB.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from .lockstep import SEQUENTIAL_BYTES

SEED_MAX = 2**64 - 1      # torch.Generator.manual_seed takes up to 2**64 - 1; numpy any integer >= 0
MEMORY_FRACTION = 0.5     # refuse a run estimated above this fraction of physical memory
TRAJECTORY_RUNS = 4        # the candidate, the reference and their noise runs, in memory at once (lockstep.py)
# The trajectory keeps per step, per tensor, summaries only (step_summary.PairSummary): three relative
# errors as Python floats and the worst entry's index and values: 344 bytes per step and tensor
# (tracemalloc, 10,000 steps of the 4-6-3 net), rounded up.
STEP_RECORD_BYTES = 400
ROWS = 120                # the iris training split (a spec without n_train)


# ---- --seed ----------------------------------------------------------------------------------------
def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise ValueError(f"--seed must be an integer in 0 .. {SEED_MAX} (2**64 - 1), got {seed!r}")
    return int(seed)


def seed_arg(text: str) -> int:
    """argparse type for --seed: 'argument --seed: must be an integer in 0 .. 2**64 - 1, got ...'."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 0 .. {SEED_MAX} (2**64 - 1), got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in 0 .. {SEED_MAX} (2**64 - 1), got {text}")
    return value


# ---- memory ----------------------------------------------------------------------------------------
def physical_memory() -> int | None:
    """Bytes of physical memory (os.sysconf), None where it cannot be read."""
    try:
        n = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return n if n > 0 else None


def parameter_count(sizes) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def rows_of(spec) -> int:
    """Training rows of the spec's data (spec.n_train; iris' 120 for an object without it)."""
    return getattr(spec, "n_train", None) or ROWS


def steps_of(spec) -> int:
    rows = rows_of(spec)
    batch = spec.batch_size or rows
    return spec.epochs * -(-rows // batch)


def run_bytes(spec, companion: bool = False) -> dict[str, int]:
    """The rule's estimate, in bytes, in its four parts (Python integers: no overflow at any size)."""
    P, steps, rows = parameter_count(spec.sizes), steps_of(spec), rows_of(spec)
    tensors = 2 * (len(spec.sizes) - 1)
    kept = 2 * 9 * P * steps  # two runs' weights and zero masks per step, kept only when they fit (lockstep.Sequential)
    return {"trajectory": STEP_RECORD_BYTES * tensors * (steps + 1) * (2 if companion else 1),
            "kept runs": (kept if kept <= SEQUENTIAL_BYTES else 0) * (2 if companion else 1),
            "order": 8 * rows * spec.epochs,
            "working set": 8 * (6 * TRAJECTORY_RUNS * P + 16 * rows * sum(spec.sizes))}


def _gb(n: int) -> str:
    gb = n / 1e9
    return f"{gb:,.1f} GB" if gb < 1e6 else f"{gb:.3g} GB"


def check_run_size(spec, companion: bool = False, memory: int | None = None) -> None:
    """Raise ValueError when ``run_bytes`` exceeds MEMORY_FRACTION of ``memory`` (default: physical memory)."""
    memory = physical_memory() if memory is None else memory
    if memory is None:
        return
    limit = int(memory * MEMORY_FRACTION)
    parts = run_bytes(spec, companion)
    total = sum(parts.values())
    if total <= limit:
        return
    P, steps = parameter_count(spec.sizes), steps_of(spec)
    if parts["working set"] > limit:
        lower = "lower --hidden (fewer or smaller hidden layers)"
        why = f"{P:,} parameters"
    else:
        lower = "lower --epochs" + (" or --hidden" if P > parameter_count([spec.sizes[0], 6, spec.sizes[-1]]) else "") + (
            " or raise --batch-size" if spec.batch_size and spec.batch_size < rows_of(spec) else "")
        why = (f"the per-step record is about {STEP_RECORD_BYTES} bytes x {2 * (len(spec.sizes) - 1)} tensors x "
               f"{steps + 1:,} steps" + (" x 2 dtypes" if companion else ""))
    raise ValueError(f"this run would need about {_gb(total)} of memory ({why}), more than "
                     f"{MEMORY_FRACTION:.0%} of this machine's {_gb(memory)}; {lower}")


# ---- numerics of the starting point -------------------------------------------------------------------
def check_initial_forward(weights, X, activation: str = "sigmoid", output: str = "softmax",
                          loss: str | None = None, y=None, dtype=None, gamma=None) -> None:
    """Raise ValueError when the initial forward pass (z^l and a^l of every layer, then the loss and the
    gradients when ``loss`` and ``y`` are given) overflows ``dtype`` (default: the weights' dtype).

    Computed in float64 with all floating-point warnings silenced: a value is out of range when it is not
    finite or larger in magnitude than the dtype's largest number.  The message names the layer."""
    import manual

    dt = np.dtype(dtype if dtype is not None else next(iter(weights.values())).dtype)
    big = float(np.finfo(dt).max)
    w64 = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    X64 = np.asarray(X, np.float64)
    net = manual.MLP.from_weights(w64, activation, output, loss or ("cross_entropy" if output == "softmax" else "mse"),
                                  gamma=gamma)

    def fits(a) -> bool:
        with np.errstate(all="ignore"):
            return bool(np.isfinite(a).all() and np.max(np.abs(a), initial=0.0) <= big)

    def worst(a) -> str:
        with np.errstate(all="ignore"):
            return "Inf or NaN" if not np.isfinite(a).all() else f"{float(np.max(np.abs(a))):.3g}"

    hint = "scale the initial weights down" + (" or use --dtype float64" if dt == np.float32 else "") + \
           (" or --standardize" if X64.size and float(np.max(np.abs(X64))) > 1 else "")
    with np.errstate(all="ignore"):
        net.forward(X64)  # keeps z^l and a^l (the class's documented attributes)
        for l in range(1, net.L + 1):
            for name, a in ((f"z^{l}", net.z[l]), (f"a^{l}", net.a[l])):
                if a is not None and not fits(a):
                    raise ValueError(f"the initial forward pass overflows {dt} at layer {l}: {name} reaches "
                                     f"{worst(a)} before any training step; {hint}")
        if loss is None or y is None:
            return
        y = np.asarray(y)
        C, grads = net.gradients(X64, y)
        terms = net.a[net.L] - manual.one_hot(y, net.sizes[-1], np.float64)
        terms = terms * terms if loss == "mse" else terms  # mse's squares overflow before their mean does
        zL = net.z[net.L]
        spread = np.max(zL, axis=1) - np.min(zL, axis=1)  # the softmax and the losses subtract logits
        total = np.float64(C) * X64.shape[0]               # the sum over the batch before its mean
        for what in (np.float64(C), total, terms, spread):
            if not fits(what):
                raise ValueError(f"the initial loss ({loss}) overflows {dt}: {worst(what)} before any training "
                                 f"step; {hint}")
        for l in range(net.L, 0, -1):
            for name, a in ((f"delta^{l}", net.delta[l]), (f"dC/dW^{l}", grads[f"W{l}"]),
                            (f"dC/db^{l}", grads[f"b{l}"])):
                if a is not None and not fits(a):
                    raise ValueError(f"the initial backward pass overflows {dt} at layer {l}: {name} reaches "
                                     f"{worst(a)} before any training step; {hint}")


def preflight(spec, companion: bool = False) -> None:
    """Every up-front check of a Spec, before anything heavy runs: the memory rule and, for a --weights
    file, the file (read bounded by the size weights of spec.sizes can take), its layer sizes, its fit in
    spec.dtype and the initial forward pass.  Raises ValueError / manual.WeightsError (exit 2)."""
    check_seed(spec.seed)
    check_run_size(spec, companion)
    if not spec.weights_file:
        return
    import manual
    from manual.weights import cast_weights

    P = parameter_count(spec.sizes)
    w = manual.load_weights(spec.weights_file, max_bytes=8 * P)
    sizes = manual.check_weights(w)
    if sizes != spec.sizes:
        raise ValueError(f"--weights {spec.weights_file!r} has layer sizes {sizes}; the spec needs {spec.sizes} "
                         f"({spec.data_name}: {spec.sizes[0]} inputs, {spec.sizes[-1]} classes; set --hidden to match)")
    w = cast_weights(w, spec.dtype, spec.weights_file)
    from .data import load_split

    data = load_split(spec)
    check_initial_forward(w, data.X_train, spec.activation, spec.output, spec.loss, data.y_train, spec.dtype,
                          getattr(spec, "gamma", None))
