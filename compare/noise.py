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

    def moved(g: np.ndarray, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        """g + u NOISE_REL eps m, in m (float64 |g| + S), for ``u`` uniform in [0, 1) (consumed here)."""
        size = tol.NOISE_REL * float(np.finfo(g.dtype).eps)
        u *= 2 * size
        u -= size                                                      # uniform in [-NOISE_REL eps, NOISE_REL eps)
        m *= u
        m += g
        return m

    def scale_of(k: str, top: float) -> float:
        if top < tol.GROUP_FLOOR["float64"] * terms.get(k, 0.0):  # the whole tensor is cancellation residue
            return terms[k]
        return top

    def hook(step, grads):
        keep = structural(step, lambda: zero_masks(grads))
        gs = {k: np.asarray(g) for k, g in grads.items()}
        if small(gs):   # one flat vector: a few NumPy calls a step instead of a dozen per tensor
            flat = np.concatenate([g.reshape(-1) for g in gs.values()])
            sizes = [g.size for g in gs.values()]
            starts = np.cumsum([0, *sizes[:-1]])
            m = np.abs(flat, dtype=np.float64)
            tops = np.maximum.reduceat(m, starts).tolist()
            m += np.repeat([scale_of(k, t) for k, t in zip(gs, tops, strict=True)], sizes)   # |g| + S
            m = moved(flat, m, rng.random(flat.size, dtype=np.float32))    # the same draws, in the same order
            parts = {k: m[s:s + g.size].reshape(g.shape) for (k, g), s in zip(gs.items(), starts.tolist(), strict=True)}
        else:
            parts = {}
            for k, g in gs.items():
                m = np.abs(g, dtype=np.float64)
                m += scale_of(k, float(np.max(m, initial=0.0)))                 # |g| + S
                parts[k] = moved(g, m, rng.random(g.shape, dtype=np.float32))
        out = {}
        for k, g in gs.items():
            if keep[k] is not None:
                np.copyto(parts[k], g, where=keep[k])
            out[k] = parts[k].astype(g.dtype, copy=False)
        return out
    return hook


SMALL = 1 << 15  # gradients of at most this many entries in all are moved as one flat vector


def small(gs: dict) -> bool:
    """One dtype, no empty tensor, at most SMALL entries (the flat path gives the same values)."""
    return (len({g.dtype for g in gs.values()}) == 1 and all(g.size for g in gs.values())
            and sum(g.size for g in gs.values()) <= SMALL)


def nudge(weights: dict, seed: int, side: int) -> dict:
    """Every nonzero weight moved one ulp up or down at random; zeros stay zero."""
    rng = np.random.default_rng([seed, 5, side])
    out = {}
    for k, w in weights.items():
        away = np.nextafter(w, np.where(rng.random(w.shape) < 0.5, -np.inf, np.inf).astype(w.dtype))
        out[k] = np.where(w == 0, w, away)
    return out
