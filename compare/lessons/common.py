"""What every lesson shares: the configuration, shared weights, recorded training runs and the agreement.

A lesson's data is a dict ``{"shared": ..., "candidate": ..., "reference": ...}``; the candidate's and
the reference's parts have the same structure and hold every number the lesson's figure plots.
:func:`agreement` walks the two in parallel, so "every number plotted" is compared by construction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .. import tolerances as tol
from ..data import iris_split
from ..protocol import Data
from ..schedule import MaskSource, epoch_orders

DTYPE = "float64"


@dataclass(frozen=True)
class Config:
    """The sizes of the experiments: FULL for ``make lessons``, QUICK for the tests."""
    depths: tuple = (1, 2, 3, 4, 5, 6, 7, 8)     # lesson 2
    vanishing_epochs: int = 100
    symmetry_epochs: int = 200                   # lesson 3
    lr_epochs: int = 200                         # lesson 4
    batch_epochs: int = 10                       # lesson 5
    overfit_epochs: int = 150                    # lesson 6
    widths: tuple = tuple(range(1, 17))          # lesson 7
    width_seeds: tuple = (0, 1, 2)
    width_epochs: int = 60


FULL = Config()
QUICK = Config(depths=(1, 3, 6), vanishing_epochs=10, symmetry_epochs=20, lr_epochs=200, batch_epochs=3,
               overfit_epochs=30, widths=(1, 3, 8), width_seeds=(0,), width_epochs=10)


def shared_weights(sizes, seed: int, dtype=DTYPE) -> dict[str, np.ndarray]:
    """Seeded W^l, b^l uniform in +-1/sqrt(fan_in) (torch.nn.Linear's default scheme), drawn by compare
    itself from ``default_rng([seed, 14])`` so that neither implementation's initialiser is involved."""
    rng = np.random.default_rng([seed, 14])
    w = {}
    for l in range(1, len(sizes)):
        bound = 1.0 / math.sqrt(sizes[l - 1])
        w[f"W{l}"] = rng.uniform(-bound, bound, (sizes[l], sizes[l - 1])).astype(dtype)
        w[f"b{l}"] = rng.uniform(-bound, bound, sizes[l]).astype(dtype)
    return w


def iris_data(standardize: bool = False) -> tuple[Data, object]:
    """The iris split as protocol Data (validation = the test split) and the Split itself."""
    s = iris_split(DTYPE, standardize)
    return Data(s.X_train, s.y_train, s.X_test, s.y_test), s


def no_dropout(spec):
    """The spec for evaluation passes (forward_backward without masks must not draw any)."""
    return replace(spec, dropout=0.0) if spec.dropout else spec


@dataclass
class Recorded:
    """One implementation's training run as the lesson sees it (the diverging case included)."""
    loss: list                                  # per step, from on_step
    kept: dict = field(default_factory=dict)    # step -> weights after it, for the steps asked
    result: object = None                       # TrainResult, None when training diverged
    diverged: str | None = None                 # the FloatingPointError's message


def train(impl, spec, weights, data: Data, keep=None, masks: MaskSource | None = None) -> Recorded:
    """Train through the protocol with compare's own sample orders; keep the weights after the steps
    ``keep(step)`` selects.  A FloatingPointError is recorded, not raised."""
    n = len(data.y_train)
    order = epoch_orders(n, spec.epochs, spec.batch_size, spec.seed)
    rec = Recorded([])

    def on_step(step, w, loss):
        rec.loss.append(float(loss))
        if keep is not None and keep(step):
            rec.kept[step] = {k: np.array(v, copy=True) for k, v in w.items()}

    try:
        rec.result = impl.train(spec, weights, data, order, masks, None, on_step)
    except FloatingPointError as e:
        rec.diverged = str(e)
    return rec


def steps_per_epoch(n: int, batch_size: int | None) -> int:
    return -(-n // (batch_size or n))


# ---- agreement -------------------------------------------------------------------------------------
def _compare(c, r, path, out, floors):
    if isinstance(c, dict) and isinstance(r, dict):
        if set(c) != set(r):
            out.append((path + "{keys}", math.inf))
            return
        for k in c:
            _compare(c[k], r[k], f"{path}.{k}" if path else str(k), out, floors)
        return
    if c is None or r is None or isinstance(c, (str, bool)) or isinstance(r, (str, bool)):
        if (c is None) != (r is None) or (isinstance(c, bool) and c != r):
            out.append((path, math.inf))
        return                     # messages (str) are not plotted numbers
    try:
        a, b = np.asarray(c, dtype=np.float64), np.asarray(r, dtype=np.float64)
    except (ValueError, TypeError):   # ragged lists: element by element
        if isinstance(c, list) and isinstance(r, list) and len(c) == len(r):
            for i, (x, y) in enumerate(zip(c, r, strict=False)):
                _compare(x, y, f"{path}[{i}]", out, floors)
        else:
            out.append((path, math.inf))
        return
    if a.shape != b.shape:
        out.append((path + f" (shapes {a.shape} vs {b.shape})", math.inf))
        return
    out.append((path, tol.rel_error(a, b, floors.get(path, 0.0))[1]))


def agreement(data: dict, dtype=DTYPE) -> dict:
    """The largest normwise relative difference, candidate against reference, over every plotted series.
    ``data["shared"]["floors"]`` may floor a series' denominator (tolerances.rel_error's ``floor``): a
    series of differences between numbers of size S (the spread of identical hidden units, say) is
    rounding residue of S, so its denominator is tolerances.group_floor of S, as the harness does."""
    rows: list[tuple[str, float]] = []
    _compare(data["candidate"], data["reference"], "", rows, data.get("shared", {}).get("floors", {}))
    worst_path, worst = max(rows, key=lambda r: r[1]) if rows else ("", 0.0)
    allowed = tol.TRAJECTORY_RTOL[str(np.dtype(dtype))]  # the per-dtype tolerance of a plotted run
    return {"max_rel": worst, "where": worst_path, "series": len(rows), "allowed": allowed,
            "dtype": str(dtype), "ok": bool(math.isfinite(worst) and worst <= allowed)}


def jsonable(x):
    """Numbers, lists and dicts for json.dumps(allow_nan=False): arrays to lists, inf/nan to strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    return x
