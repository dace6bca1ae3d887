"""What a trajectory keeps of a step: per pair of runs, per tensor, the relative error (and where the
candidate pair has its worst entry), computed from the runs' flat weight vectors of that step.

``compare_step`` reads every run's vector of a step once, a BLOCK of entries at a time, and takes
from that block everything every pair needs (the max |b| per tensor of each run a pair is measured
against, and each pair's max |a - b| per tensor): the block stays in cache while the pairs read it,
instead of a dozen passes over vectors of millions of entries (docs/benchmarks.md).  A step with a
NaN or Inf in some tensor takes the plain per-pair path (PairSummary.add) for that pair, which
finds the first non-finite entry; the numbers are the same either way (tests/test_step_summary.py).
"""
from __future__ import annotations

import math

import numpy as np

from . import tolerances as tol

BLOCK = 1 << 15  # entries of a vector read at a time (256 KiB of float64: a few of them fit in L2)


def segment_starts(offs: dict) -> np.ndarray:
    """The start of each tensor in the flat vector, for np.maximum.reduceat (no tensor is empty)."""
    return np.array([s for s, _, _ in offs.values()], dtype=np.intp)


def _abs_max(x: np.ndarray, at: np.ndarray) -> np.ndarray:
    """max |x| of each segment of ``x`` starting at ``at`` (two reading passes, no temporary |x|; a NaN
    propagates)."""
    return np.maximum(np.maximum.reduceat(x, at), -np.minimum.reduceat(x, at))


def tensor_scales(B: np.ndarray, offs: dict, starts: np.ndarray | None = None) -> dict:
    """name -> max |b| over the finite entries of that tensor of the flat vector ``B``."""
    starts = segment_starts(offs) if starts is None else starts
    with np.errstate(invalid="ignore"):
        top = _abs_max(B, starts)
    return _finite_scales(B, offs, top)


def _finite_scales(B, offs, top) -> dict:
    out = {}
    for k, m, (s, e, _) in zip(offs, top.tolist(), offs.values(), strict=True):
        if not math.isfinite(m):   # a NaN or Inf in the tensor: the largest finite entry
            b = B[s:e]
            m = float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0))
        out[k] = m
    return out


class PairSummary:
    """Per step, ``a`` against ``b``: relative error per tensor (and the loss, normwise over the steps
    so far), and where ``worst`` is asked, the worst entry's index, both values and the max-abs."""

    def __init__(self, offs, dtype, worst: bool, input_scale: float = 1.0):
        self.offs, self.floor_rel, self.keep_worst = offs, tol.GROUP_FLOOR[str(np.dtype(dtype))], worst
        self.abs_floor = tol.PARAM_FLOOR[str(np.dtype(dtype))] / max(1.0, input_scale)  # see tolerances.py
        self.starts = segment_starts(offs)
        self.rel = {k: [0.0] for k in [*offs, "loss"]}
        self.worst = {k: [([], None, None, 0.0)] for k in offs}
        self.loss_scale = 0.0
        self.buf = None

    def add(self, A, B, loss_a, loss_b, scales: dict | None = None):
        """The whole pair from the two vectors (``scales``: tensor_scales(B), when the caller has it)."""
        scales = scales if scales is not None else tensor_scales(B, self.offs, self.starts)
        if self.buf is None or self.buf.shape != A.shape:
            self.buf = np.empty(A.shape, dtype=np.float64)
        d = self.buf
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(A, B, out=d)
            np.abs(d, out=d)
            if self.keep_worst:
                at = [s + int(np.argmax(d[s:e])) for s, e, _ in self.offs.values()]   # the first NaN, if any
                top = [float(d[i]) for i in at]
            else:
                top = np.maximum.reduceat(d, self.starts).tolist()
        if not all(np.isfinite(top)):
            top, at = self._non_finite(d)
        self.record(A, B, top, at if self.keep_worst else None, scales, loss_a, loss_b)

    def _non_finite(self, d):
        """Per tensor the max |a - b| (inf where some entry is not finite) and the index of the first
        non-finite entry, else of the first largest."""
        top, at = [], []
        for s, e, _ in self.offs.values():
            dk = d[s:e]
            dk = np.where(np.isfinite(dk), dk, np.inf)
            i = int(np.argmax(dk))
            top.append(float(dk[i]))
            at.append(s + i)
        return top, at

    def record(self, A, B, top, at, scales: dict, loss_a, loss_b):
        """Append a step: ``top`` the max |a - b| per tensor (all finite, or from _non_finite), ``at``
        the flat index of each tensor's worst entry (when this pair keeps it)."""
        floor = max(self.floor_rel * max(scales.values(), default=0.0), self.abs_floor)
        for j, (k, (s, _, shape)) in enumerate(self.offs.items()):
            dm = top[j]
            self.rel[k].append((0.0 if dm == 0 else dm / max(scales[k], floor)) if math.isfinite(dm) else math.inf)
            if self.keep_worst:
                i = at[j]
                self.worst[k].append((_index(i - s, shape), float(A[i]), float(B[i]), dm))
        la, lb = float(loss_a), float(loss_b)   # Python floats: inf - inf is nan, no warning
        if math.isfinite(lb):
            self.loss_scale = max(self.loss_scale, abs(lb))
        r = 0.0 if la == lb else abs(la - lb) / self.loss_scale if self.loss_scale else math.inf
        self.rel["loss"].append(r if math.isfinite(r) else math.inf)

    def arrays(self) -> dict:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.rel.items()}


def _index(i: int, shape) -> list:
    """np.unravel_index(i, shape) as a list of ints (the usual 1-D and 2-D shapes without NumPy's call)."""
    if len(shape) == 1:
        return [i]
    if len(shape) == 2:
        return list(divmod(i, shape[1]))
    return [int(x) for x in np.unravel_index(i, shape)]


def compare_step(vecs: dict, losses: dict, pairs: dict, partner: dict, offs: dict, starts: np.ndarray):
    """Add one step to every pair whose two runs are in ``vecs`` (role -> flat weights of the step):
    ``pairs`` key -> PairSummary of ``vecs[key]`` against ``vecs[partner[key]]``."""
    live = [k for k in pairs if k in vecs and partner[k] in vecs]
    if not live:
        return
    against = sorted({partner[k] for k in live})
    n, T = next(reversed(offs.values()))[1], len(offs)
    wrong = {r: v.size for r, v in vecs.items() if v.size != n}
    if wrong:
        raise ValueError("; ".join(f"the {r}'s weights have {size} entries" for r, size in wrong.items())
                         + f" where the network has {n}")
    bounds = [(b, e) for b, e, _ in offs.values()]
    scale = {r: np.zeros(T) for r in against}
    top = {k: np.zeros(T) for k in live if not pairs[k].keep_worst}
    worst = {k: ([0.0] * T, [b for b, _ in bounds]) for k in live if pairs[k].keep_worst}  # max, flat index
    buf = np.empty(min(n, BLOCK))
    with np.errstate(invalid="ignore", over="ignore"):
        for s in range(0, n, BLOCK):
            e = min(n, s + BLOCK)
            first = int(np.searchsorted(starts, s, side="right")) - 1   # the tensor block s starts in
            last = int(np.searchsorted(starts, e, side="left"))         # one past the last tensor in the block
            ids = slice(first, last)
            local = np.maximum(starts[ids], s) - s
            for r in against:
                np.maximum(scale[r][ids], _abs_max(vecs[r][s:e], local), out=scale[r][ids])
            for k in live:
                d = buf[:e - s]
                np.subtract(vecs[k][s:e], vecs[partner[k]][s:e], out=d)
                np.abs(d, out=d)
                if k in worst:
                    tops, at = worst[k]
                    for t in range(first, last):   # the first largest entry: a later block must beat it
                        ls, le = max(bounds[t][0], s) - s, min(bounds[t][1], e) - s
                        i = int(np.argmax(d[ls:le]))   # the block's first NaN, if any
                        v = float(d[ls + i])
                        if v > tops[t] or v != v:   # a NaN: the pair takes the plain path below
                            tops[t], at[t] = v, s + ls + i
                else:
                    np.maximum(top[k][ids], np.maximum.reduceat(d, local), out=top[k][ids])
    scales = {r: _finite_scales(vecs[r], offs, scale[r]) for r in against}
    for k in live:
        b = partner[k]
        tops, at = worst[k] if k in worst else (top[k].tolist(), None)
        if not all(map(math.isfinite, tops)):
            pairs[k].add(vecs[k], vecs[b], losses[k], losses[b], scales[b])
        else:
            pairs[k].record(vecs[k], vecs[b], tops, at, scales[b], losses[k], losses[b])
