"""The noise runs of a trajectory (see trajectory.py and tolerances.py): each side trained again from
weights one ulp away, its gradients moved by rounding-sized relative noise before every step, except
the structural zeros both sides share; how far such a run drifts from its own run is the noise
envelope a step is judged against."""
from __future__ import annotations

import numpy as np

from . import tolerances as tol
from .protocol import Data


def zero_masks(grads: dict) -> dict:
    """name -> which entries of that gradient are exactly zero (None where none is)."""
    out = {}
    for k, g in grads.items():
        z = np.asarray(g) == 0
        out[k] = z if z.any() else None
    return out


def zero_recorder(lock, role: str):
    """A gradient hook that changes nothing and hands the rendezvous (lockstep.Lockstep or Sequential)
    which entries are exactly zero."""
    def hook(step, grads):
        lock.put_zeros(role, step, zero_masks(grads))
        return grads
    return hook


def terms_scale(impl, spec, weights, data: Data) -> dict:
    """Per gradient tensor, the size of the terms its entries sum at the initial weights: n max|delta^l|
    max|a^{l-1}| for dC/dW^l, n max|delta^l| for dC/db^l ({} where the forward pass is not available)."""
    if "forward" in impl.unavailable(spec) or "gradients" in impl.unavailable(spec):
        return {}
    p = impl.forward_backward(spec, weights, data.X_train, data.y_train, None)
    n, out = data.X_train.shape[0], {}
    for l in range(1, len(p.z)):
        if p.delta[l] is not None:
            d = n * float(np.max(np.abs(np.asarray(p.delta[l], dtype=np.float64)), initial=0.0))
            out[f"W{l}"] = d * float(np.max(np.abs(np.asarray(p.a[l - 1], dtype=np.float64)), initial=0.0))
            out[f"b{l}"] = d
    return out


def noise_hook(seed: int, side: int, structural, terms: dict | None = None):
    """The gradient hook of a noise run: every entry g of a gradient tensor G moved by u NOISE_REL eps
    (|g| + S), u uniform in [-1, 1), S = max|G|, except structural zeros: ``structural(step, own)``
    gives the entries exactly zero at that step in both implementations' runs (a dead ReLU unit, a
    dropped unit; ``own()``, this run's zeros, once neither is going), which stay zero (tolerances.py).
    A tensor whose entries are all below GROUP_FLOOR of the size of its terms (``terms``: every
    entry a cancellation residue, as with all-zero weights) has S = the terms' size instead."""
    rng = np.random.default_rng([seed, 4, side])
    terms = terms or {}

    def hook(step, grads):
        out = {}
        keep = structural(step, lambda: zero_masks(grads))
        for k, g in grads.items():
            g = np.asarray(g)
            moved = np.abs(g, dtype=np.float64)
            scale = float(np.max(moved, initial=0.0))
            if scale < tol.GROUP_FLOOR["float64"] * terms.get(k, 0.0):  # the whole tensor is cancellation residue
                scale = terms[k]
            moved += scale                                             # |g| + S
            size = tol.NOISE_REL * float(np.finfo(g.dtype).eps)
            u = rng.random(g.shape, dtype=np.float32)
            u *= 2 * size
            u -= size                                                  # uniform in [-NOISE_REL eps, NOISE_REL eps)
            moved *= u
            moved += g
            if keep[k] is not None:
                np.copyto(moved, g, where=keep[k])
            out[k] = moved.astype(g.dtype, copy=False)
        return out
    return hook


def nudge(weights: dict, seed: int, side: int) -> dict:
    """Every nonzero weight moved one ulp up or down at random; zeros stay zero."""
    rng = np.random.default_rng([seed, 5, side])
    out = {}
    for k, w in weights.items():
        away = np.nextafter(w, np.where(rng.random(w.shape) < 0.5, -np.inf, np.inf).astype(w.dtype))
        out[k] = np.where(w == 0, w, away)
    return out
