"""Each side's back-propagated gradient against central differences of its own loss, in float64:
a third opinion that needs no other implementation.

A network of at most ``max_coords`` parameters is checked coordinate by coordinate: for every
theta_j, (C(theta + h_j e_j) - C(theta - h_j e_j)) / 2h_j against dC/dtheta_j, with the step
h_j = FD_STEP x max(1, |theta_j|) scaled to the parameter.  A larger network is checked along
FD_DIRECTIONS random directions per tensor (the fast mode of ``torch.autograd.gradcheck``): v a
unit vector of random signs over that tensor's entries, g.v against (C(theta + hv) - C(theta - hv)) / 2h,
h = FD_STEP x max(1, max |theta| of the tensor): two loss evaluations per direction instead of per
coordinate, so the cost does not grow with the width, and a wrong formula anywhere in a tensor
moves every direction.  Either way the error is judged relative to max |dC/dtheta| over the whole
network (a coordinate is the direction e_j), the denominator floored at the difference quotient's
own rounding error, FD_ROUNDING x eps x max(1, |C|) / h / FD_RTOL, so that a gradient that is
itself zero up to rounding (all-zero weights) is not measured against its rounding residue.

The loss comes from the implementation's optional ``forward_loss`` method (a forward pass only; see
compare.protocol), else from ``forward_backward``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import tolerances as tol
from .protocol import readonly, readonly_inputs
from .results import TensorCheck, section, worst


def _loss_of(impl, spec64, X, y, masks, w64, C: float, notes: list):
    """The loss as a function of the weights: the implementation's forward_loss when it has one and it
    gives forward_backward's loss at the start (else forward_backward, with a note).  Inputs read-only."""
    full = lambda w: float(impl.forward_backward(spec64, w, X, y, masks).loss)  # noqa: E731
    if not callable(getattr(impl, "forward_loss", None)):
        return full
    fast = lambda w: float(impl.forward_loss(spec64, w, X, y, masks))  # noqa: E731
    c = fast(w64)
    if not abs(c - C) <= tol.FLOAT64_RTOL * max(abs(C), 1e-300):
        notes.append(f"{impl.name}'s forward_loss gives {c!r} at the start, forward_backward's loss {C!r}: "
                     "finite differences use forward_backward")
        return full
    return fast


def _directions(name, w, coordinate_wise: bool, rng):
    """(steps h, directions as rows of a (k, w.size) array or None for the unit vectors e_j)."""
    if coordinate_wise:
        return tol.FD_STEP * np.maximum(1.0, np.abs(w.reshape(-1))), None
    v = rng.choice([-1.0, 1.0], size=(tol.FD_DIRECTIONS, w.size)) / np.sqrt(w.size)
    return np.full(tol.FD_DIRECTIONS, tol.FD_STEP * max(1.0, float(np.max(np.abs(w))))), v


def _side(impl, role, spec64, w64, X, y, masks, coordinate_wise: bool, rng, notes: list):
    """One side's checks; ``w64``, ``X``, ``y``, ``masks`` read-only (protocol.readonly_inputs)."""
    base = impl.forward_backward(spec64, w64, X, y, masks)
    loss = _loss_of(impl, spec64, X, y, masks, w64, float(base.loss), notes)
    C = abs(float(base.loss))
    scale = max(float(np.max(np.abs(g))) for g in base.grads.values())
    eps = float(np.finfo(np.float64).eps)
    checks, floors = [], []
    moved = {n: v.copy() for n, v in w64.items()}
    seen = {n: readonly(v) for n, v in moved.items()}  # what the implementation sees: moved, read-only
    for name, w in w64.items():
        hs, dirs = _directions(name, w, coordinate_wise, rng)
        flat, w0 = moved[name].reshape(-1), w.reshape(-1)
        g = np.asarray(base.grads[name], dtype=np.float64).reshape(-1)
        fd = np.empty(len(hs))
        for j, h in enumerate(hs):
            step = h * (dirs[j] if dirs is not None else 1.0)
            at = slice(None) if dirs is not None else slice(j, j + 1)
            flat[at] = w0[at] + step
            up = loss(seen)
            flat[at] = w0[at] - step
            down = loss(seen)
            flat[at] = w0[at]
            fd[j] = (up - down) / (2 * h)
        bp = g if dirs is None else dirs @ g
        floors.append(tol.FD_ROUNDING * eps * max(1.0, C) / float(np.min(hs)) / tol.FD_RTOL)
        max_abs = float(np.max(np.abs(bp - fd))) if np.isfinite(fd).all() else float("inf")
        index, bv, fv = worst(bp, fd)  # index into the checked entries: the entry's [row, column] (none for directions)
        where = [int(i) for i in np.unravel_index(index[0], w.shape)] if dirs is None and index else []
        checks.append(TensorCheck(f"d{name}", int(name[1:]), list(w.shape), max_abs, 0.0, tol.FD_RTOL, False, None,
                                  where, bv, fv, side=role))
    denom = max(scale, max(floors))
    for t in checks:
        t.rel = t.max_abs / denom if denom > 0 else (0.0 if t.max_abs == 0 else float("inf"))
        t.ok = bool(t.rel <= tol.FD_RTOL)
    return checks, scale, denom, C


def finite_differences(impls: dict, spec, weights, X, y, masks, max_coords: int = 400):
    """``impls``: role -> implementation (those that can run this section)."""
    spec64 = replace(spec, dtype="float64", weights_file=None)
    w64, X64, y, m64 = readonly_inputs({k: np.asarray(v, dtype=np.float64) for k, v in weights.items()},
                                       np.asarray(X, dtype=np.float64), y,
                                       None if masks is None else [np.asarray(m, np.float64) for m in masks])
    total = sum(w.size for w in w64.values())
    coordinate_wise = total <= max_coords
    checks, notes = [], []
    for side, (role, impl) in enumerate(impls.items()):
        rng = np.random.default_rng([spec.seed, 2, side])
        cs, scale, denom, C = _side(impl, role, spec64, w64, X64, y, m64, coordinate_wise, rng, notes)
        checks += cs
        how = ("h = {0:g} x max(1, |theta_j|)" if coordinate_wise else "h = {0:g} x max(1, max |theta| of the tensor)")
        notes.append(f"{role} ({impl.name}): its back-propagated gradient against central differences of its own loss, "
                     f"float64, {how.format(tol.FD_STEP)}; error relative to {denom:.3g} "
                     f"(max |dC/dtheta| = {scale:.3g}, |C| = {C:.3g})")
    if coordinate_wise:
        notes.append(f"all {total} coordinates per side")
    else:
        notes.append(f"{tol.FD_DIRECTIONS} random directions per tensor per side ({tol.FD_DIRECTIONS * len(w64)} in all; "
                     f"unit vectors of random signs, seeded): the network has {total} parameters, more than the "
                     f"{max_coords} checked coordinate by coordinate; a direction's error is |g.v - fd|")
    return section("finite_differences", checks, notes)
