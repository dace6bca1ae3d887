"""Each side's back-propagated gradient against central differences of its own loss, in float64:
a third opinion that needs no other implementation.

The step for coordinate j is h_j = FD_STEP x max(1, |theta_j|), so it scales with the parameters.
The error of a coordinate is |bp - fd|; it is judged relative to max |dC/dtheta| over the whole
network, with the denominator floored at the difference quotient's own rounding error,
FD_ROUNDING x eps x max(1, |C|) / h / FD_RTOL, so a gradient that is itself zero up to rounding
(all-zero weights) is not measured against its rounding residue.  Large networks sample
coordinates (seeded), every tensor keeping at least one.
"""
from __future__ import annotations

import numpy as np

from . import tolerances as tol
from .results import TensorCheck, section, worst


def _side(impl, role, spec64, w64, X, y, masks, coords_per_tensor, rng):
    base = impl.forward_backward(spec64, w64, X, y, masks)
    C = abs(float(base.loss))
    scale = max(float(np.max(np.abs(g))) for g in base.grads.values())
    eps = float(np.finfo(np.float64).eps)
    checks, floors = [], []
    for name, w in w64.items():
        k = coords_per_tensor[name]
        coords = np.arange(w.size) if k >= w.size else np.sort(rng.choice(w.size, k, replace=False))
        fd = np.empty(len(coords))
        hs = tol.FD_STEP * np.maximum(1.0, np.abs(w.reshape(-1)[coords]))
        for j, (c, h) in enumerate(zip(coords, hs, strict=False)):
            moved = {n: v.copy() for n, v in w64.items()}
            flat = moved[name].reshape(-1)
            flat[c] = w.reshape(-1)[c] + h
            up = impl.forward_backward(spec64, moved, X, y, masks).loss
            flat[c] = w.reshape(-1)[c] - h
            down = impl.forward_backward(spec64, moved, X, y, masks).loss
            fd[j] = (up - down) / (2 * h)
        floors.append(tol.FD_ROUNDING * eps * max(1.0, C) / float(np.min(hs)) / tol.FD_RTOL)
        bp = np.asarray(base.grads[name], dtype=np.float64).reshape(-1)[coords]
        max_abs = float(np.max(np.abs(bp - fd))) if np.isfinite(fd).all() else float("inf")
        index, bv, fv = worst(bp, fd)
        checks.append(TensorCheck(f"d{name}", int(name[1:]), list(w.shape), max_abs, 0.0, tol.FD_RTOL, False, None,
                                  index, bv, fv, side=role))
    denom = max(scale, max(floors))
    for t in checks:
        t.rel = t.max_abs / denom if denom > 0 else (0.0 if t.max_abs == 0 else float("inf"))
        t.ok = bool(t.rel <= tol.FD_RTOL)
    return checks, scale, denom, C


def finite_differences(impls: dict, spec, weights, X, y, masks, max_coords: int = 400):
    """``impls``: role -> implementation (those that can run this section)."""
    from dataclasses import replace

    spec64 = replace(spec, dtype="float64", weights_file=None)
    w64 = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    X64, m64 = np.asarray(X, dtype=np.float64), None if masks is None else [np.asarray(m, np.float64) for m in masks]
    total = sum(w.size for w in w64.values())
    per = {k: (w.size if total <= max_coords else max(1, round(max_coords * w.size / total))) for k, w in w64.items()}
    checks, notes = [], []
    for side, (role, impl) in enumerate(impls.items()):
        rng = np.random.default_rng([spec.seed, 2, side])
        cs, scale, denom, C = _side(impl, role, spec64, w64, X64, y, m64, per, rng)
        checks += cs
        notes.append(f"{role} ({impl.name}): its back-propagated gradient against central differences of its own loss, "
                     f"float64, h = {tol.FD_STEP:g} x max(1, |theta|); error relative to {denom:.3g} "
                     f"(max |dC/dtheta| = {scale:.3g}, |C| = {C:.3g})")
    n_coords = sum(min(per[k], w64[k].size) for k in w64)
    notes.append(f"{n_coords} of {total} coordinates per side" + (" (sampled, seeded; every tensor at least one)"
                                                                   if n_coords < total else " (all)"))
    return section("finite_differences", checks, notes)
