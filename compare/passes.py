"""One forward and backward pass on each side, compared tensor by tensor: z^l, a^l and the loss
(forward), delta^l, dC/dW^l, dC/db^l (gradients).

float64: the candidate against the reference, FLOAT64_RTOL.  float32: both sides also run in
float64 on the same float32-rounded weights and inputs; the candidate's float32 result is judged
against the reference's float64 one, allowed FLOAT32_ORDER x the tighter side's own float32 error
(the noise floor; tolerances.py).
"""
from __future__ import annotations

import numpy as np

from . import tolerances as tol
from .results import Section, check_tensor, section


def _up(x):
    return None if x is None else np.asarray(x, dtype=np.float64)


def _float64_pass(impl, spec64, weights, X, y, masks):
    return impl.forward_backward(spec64, {k: _up(v) for k, v in weights.items()}, _up(X), y,
                                 None if masks is None else [_up(m) for m in masks])


def _floors(p32, p64, f: dict):
    """Per tensor key: one side's own float32 error against its float64 run, measured with the same
    denominator floors ``f`` (group -> floor) as the candidate's error, so that a cancellation residue
    both sides share (a true zero computed as a few ulps of its terms) is a finite noise level."""
    out = {}
    for l in range(1, len(p32.z)):
        for key in ("z", "a", "delta"):
            a, b = getattr(p32, key)[l], getattr(p64, key)[l]
            fk = f["delta"] if key == "delta" else f["forward"]
            out[f"{key}{l}"] = tol.rel_error(a, b, fk)[1] if a is not None and b is not None else np.inf
    out["loss"] = tol.rel_error(p32.loss, p64.loss)[1]
    for k in p32.grads:
        out[f"d{k}"] = tol.rel_error(p32.grads[k], p64.grads[k], f["grads"])[1]
    return out


def _terms_floor(dtype, p) -> float:
    """GROUP_FLOOR x the largest sum of |terms| a gradient entry adds up: n max|delta^l| max|a^{l-1}| for
    dC/dW^l, n max|delta^l| for dC/db^l.  Gradients whose terms cancel (all-zero weights: every true
    gradient is 0) are rounding residue of terms that size, not of their own tiny value."""
    n, m = p.a[0].shape[0], 0.0
    for l in range(1, len(p.z)):
        if p.delta[l] is not None:
            d = float(np.max(np.abs(np.asarray(p.delta[l], dtype=np.float64)), initial=0.0))
            m = max(m, n * d * max(1.0, float(np.max(np.abs(np.asarray(p.a[l - 1], dtype=np.float64)), initial=0.0))))
    return tol.GROUP_FLOOR[str(np.dtype(dtype))] * m


def forward_and_gradients(candidate, reference, spec, weights, X, y, masks) -> tuple[Section, Section]:
    c = candidate.forward_backward(spec, weights, X, y, masks)
    r = reference.forward_backward(spec, weights, X, y, masks)
    r64 = c64 = floor = None
    if spec.np_dtype == np.float32:
        from dataclasses import replace

        spec64 = replace(spec, dtype="float64", weights_file=None)
        r64 = _float64_pass(reference, spec64, weights, X, y, masks)
        c64 = _float64_pass(candidate, spec64, weights, X, y, masks)
    L = len(r.z) - 1
    base = r64 if r64 is not None else r   # what the candidate is measured against
    f_fwd = tol.group_floor(spec.dtype, *base.z[1:], *base.a[1:])
    f_delta = tol.group_floor(spec.dtype, *[d for d in base.delta[1:] if d is not None])
    f_grad = max(tol.group_floor(spec.dtype, *base.grads.values()), _terms_floor(spec.dtype, base))
    if r64 is not None:
        groups = {"forward": f_fwd, "delta": f_delta, "grads": f_grad}
        fr, fc = _floors(r, r64, groups), _floors(c, c64, groups)
        floor = {k: min(fr[k], fc[k]) for k in fr}

    slips = {"forward": [], "gradients": []}  # a side that computed in another dtype than the run's

    def one(key, l, cv, rv, r64v, f):
        t = check_tensor(key, l, cv, rv, r64v, None if floor is None else floor[key], floor=f)
        for role, impl, v in (("candidate", candidate, cv), ("reference", reference, rv)):
            got = np.asarray(v).dtype
            if key != "loss" and got != spec.np_dtype:
                t.ok = False
                slips["gradients" if key.startswith("d") else "forward"].append(
                    f"the {role} ({impl.name}) returned {key} as {got} in a {spec.dtype} run: an implementation "
                    "computes in the dtype of the weights it is given (compare.protocol)")
        return t

    fwd = []
    for l in range(1, L + 1):
        fwd.append(one(f"z{l}", l, c.z[l], r.z[l], None if r64 is None else r64.z[l], f_fwd))
        fwd.append(one(f"a{l}", l, c.a[l], r.a[l], None if r64 is None else r64.a[l], f_fwd))
    fwd.append(one("loss", None, c.loss, r.loss, None if r64 is None else r64.loss, 0.0))
    grad, notes = [], []
    for l in range(L, 0, -1):
        if c.delta[l] is None or r.delta[l] is None:
            notes.append(f"delta{l} not available from " + " and ".join(
                role for role, p in (("the candidate", c), ("the reference", r)) if p.delta[l] is None))
        else:
            grad.append(one(f"delta{l}", l, c.delta[l], r.delta[l], None if r64 is None else r64.delta[l], f_delta))
        for p in "Wb":
            k = f"{p}{l}"
            grad.append(one(f"d{k}", l, c.grads[k], r.grads[k], None if r64 is None else r64.grads[k], f_grad))
    return section("forward", fwd, slips["forward"][:2]), section("gradients", grad, notes + slips["gradients"][:2])
