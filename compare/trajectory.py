"""Whole training runs, compared step by step against a measured noise envelope (tolerances.py).

Four runs with the same sample order and dropout masks: the candidate and the reference, and
each one's noise run (started one rounding error away, its gradients moved by rounding-sized
relative noise before every step).  Step t is judged when the envelope (the tighter side's
noise up to ENVELOPE_LEAD steps ahead) is at most ENVELOPE_LIMIT; its allowance is TRAJECTORY_RTOL + ENVELOPE_FACTOR x
envelope.  Epoch-level outcomes (accuracies, the early-stopping epoch, the restored weights) must
be identical for the epochs that end on a judged step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tolerances as tol
from .protocol import Data, TrainResult
from .results import Section, TensorCheck, check_tensor, section, worst
from .schedule import MaskSource, batches, epoch_orders
from .vocabulary import param_names


@dataclass
class Run:
    """One implementation's training run: params[s] = every parameter after step s (row 0 = the
    initial weights), flattened in the order W1, b1, W2, b2, ... (float64)."""
    result: TrainResult
    params: np.ndarray
    loss: np.ndarray


@dataclass
class Trajectory:
    section: Section
    steps: int
    judged_steps: int
    candidate: Run
    reference: Run
    noise: dict                    # role -> that side's noise Run (absent where not available)
    divergence: np.ndarray         # per step: max over tensors of the candidate's relative error
    noise_per_step: dict           # role -> per step: that noise run's distance from its own run
    envelope: np.ndarray           # per step: the measured noise the allowance scales with
    allowance: np.ndarray          # per step: the relative error allowed (inf: not judged)
    judged: np.ndarray             # per step: bool
    schedule: list                 # the sample indices of every step


def _flat(w: dict, names) -> np.ndarray:
    return np.concatenate([np.asarray(w[k], dtype=np.float64).reshape(-1) for k in names])


def _offsets(weights) -> dict:
    """name -> (start, stop, shape) in the flattened W1, b1, W2, ... vector."""
    offs, i = {}, 0
    for k in param_names(len(weights) // 2):
        offs[k] = (i, i + weights[k].size, weights[k].shape)
        i += weights[k].size
    return offs


class ZeroRecorder:
    """A gradient hook that changes nothing and records, per step, which entries are exactly zero."""

    def __init__(self):
        self.zeros: list[dict] = []

    def __call__(self, step, grads):
        self.zeros.append({k: np.asarray(g) == 0 for k, g in grads.items()})
        return grads


def noise_hook(seed: int, side: int, structural: list):
    """The gradient hook of a noise run: every entry g of a tensor G moved by
    u NOISE_REL eps (|g| + max|G|), max over every gradient tensor G, u uniform in [-1, 1], except
    structural zeros: entries that were
    exactly zero at that step in both implementations' runs (``structural[step]``; a dead ReLU
    unit, a dropped unit), which stay zero (tolerances.py)."""
    rng = np.random.default_rng([seed, 4, side])

    def hook(step, grads):
        out = {}
        scale = max(float(np.max(np.abs(g), initial=0.0)) for g in grads.values())
        for k, g in grads.items():
            g = np.asarray(g)
            g64 = g.astype(np.float64)
            keep = structural[step][k] if step < len(structural) else (g == 0)
            size = tol.NOISE_REL * float(np.finfo(g.dtype).eps) * (np.abs(g64) + scale)
            out[k] = np.where(keep, g64, g64 + size * rng.uniform(-1, 1, g.shape)).astype(g.dtype)
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


def train_run(impl, spec, weights, data: Data, order, masks, hook=None) -> Run:
    names = list(param_names(len(weights) // 2))
    rows, losses = [_flat(weights, names)], []

    def on_step(step, w, loss):
        rows.append(_flat(w, names))
        losses.append(loss)

    res = impl.train(spec, weights, data, order, masks, hook, on_step)
    if len(rows) != len(res.loss) + 1:
        raise RuntimeError(f"implementation {impl.name!r} called on_step {len(rows) - 1} times for "
                           f"{len(res.loss)} recorded losses (see compare.protocol)")
    return Run(res, np.stack(rows), np.asarray(res.loss, dtype=np.float64))


def per_step_rel(A, B, offs, loss_a, loss_b, dtype) -> dict:
    """Relative error after every step (row 0 = before training), per tensor and for the loss."""
    out = {}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        fin_b = np.abs(np.where(np.isfinite(B), B, 0))
        floor = tol.GROUP_FLOOR[str(np.dtype(dtype))] * fin_b.max(1)  # all parameters at each step
        for k, (s, e, _) in offs.items():
            a, b = A[:, s:e], B[:, s:e]
            bad = ~(np.isfinite(a).all(1) & np.isfinite(b).all(1))
            d = np.abs(np.where(np.isfinite(a - b), a - b, 0)).max(1)
            scale = np.maximum(fin_b[:, s:e].max(1), floor)
            r = np.where(d == 0, 0.0, d / scale)
            r[bad] = np.inf
            out[k] = r
        # the loss curve is one tensor: normwise over the steps so far (a single batch's loss can be
        # ~1e-6 while its terms are ~10, so its own relative error would measure cancellation)
        scale = np.maximum.accumulate(np.abs(np.where(np.isfinite(loss_b), loss_b, 0)))
        lr = np.where(loss_a == loss_b, 0.0, np.abs(loss_a - loss_b) / scale)
        out["loss"] = np.concatenate([[0.0], np.where(np.isfinite(lr), lr, np.inf)])
    return out


def _noise_level(noise: Run, own: Run, offs, dtype, n: int) -> np.ndarray:
    """The noise run's distance from its own run, largest up to ENVELOPE_LEAD steps ahead, per step
    0..n (inf past the noise run's end)."""
    m = min(len(noise.loss), len(own.loss), n)
    rel = per_step_rel(noise.params[:m + 1], own.params[:m + 1], offs, noise.loss[:m], own.loss[:m], dtype)
    so_far = np.maximum.accumulate(np.max(np.stack(list(rel.values())), axis=0))
    level = np.full(n + 1, np.inf)
    level[:m + 1] = so_far[np.minimum(np.arange(m + 1) + tol.ENVELOPE_LEAD, m)]
    return level


def trajectory(candidate, reference, spec, weights, data: Data, masks: MaskSource | None = None) -> Trajectory:
    """Train both sides from ``weights`` and judge every step (see the module docstring)."""
    n_train = data.X_train.shape[0]
    order = epoch_orders(n_train, spec.epochs, spec.batch_size, spec.seed)
    if masks is None and spec.dropout:
        masks = MaskSource(spec.dropout, spec.seed, spec.dtype)
    roles = {"candidate": candidate, "reference": reference}
    can_noise = {r: "noise" not in impl.unavailable(spec) for r, impl in roles.items()}
    zeros = {r: ZeroRecorder() for r in roles if can_noise[r]}
    runs = {r: train_run(impl, spec, weights, data, order, masks, zeros.get(r)) for r, impl in roles.items()}
    rec = [z.zeros for z in zeros.values()]
    structural = [{k: np.logical_and.reduce([z[t][k] for z in rec]) for k in rec[0][t]}
                  for t in range(min(map(len, rec)))] if rec else []
    noise = {}
    for side, (r, impl) in enumerate(roles.items()):
        if can_noise[r]:
            noise[r] = train_run(impl, spec, nudge(weights, spec.seed, side), data, order, masks,
                                 noise_hook(spec.seed, side, structural))
    C, R = runs["candidate"], runs["reference"]
    offs, dt = _offsets(weights), spec.dtype
    n = min(len(C.loss), len(R.loss))
    rel = per_step_rel(C.params[:n + 1], R.params[:n + 1], offs, C.loss[:n], R.loss[:n], dt)
    levels = {r: _noise_level(noise[r], runs[r], offs, dt, n) for r in noise}
    envelope = np.min(np.stack(list(levels.values())), axis=0) if levels else np.zeros(n + 1)
    judged = envelope <= tol.ENVELOPE_LIMIT
    judged[0] = True  # the shared initial weights
    allowance = np.where(judged, tol.TRAJECTORY_RTOL[dt] + tol.ENVELOPE_FACTOR * envelope, np.inf)
    judged_steps = int(np.sum(judged[1:]))
    checks, first_fail = [], None
    for k in [*offs, "loss"]:
        r = rel[k]
        fails = np.flatnonzero(~(r <= allowance))
        s = int(fails[0]) if len(fails) else int(np.argmax(np.where(judged, r, -1.0)))
        if k == "loss":
            cv, rv = (float(C.loss[s - 1]), float(R.loss[s - 1])) if s > 0 else (None, None)
            idx, shape, ma = [], [], (abs(cv - rv) if s > 0 else 0.0)
        else:
            a, b, e = offs[k]
            va, vb = C.params[s, a:b].reshape(e), R.params[s, a:b].reshape(e)
            idx, cv, rv = worst(va, vb)
            ma, shape = float(np.max(np.abs(va - vb))), list(e)
        c = TensorCheck(k, None if k == "loss" else int(k[1:]), shape, ma, float(r[s]), float(allowance[s]),
                        not len(fails), s, idx, cv, rv, float(envelope[s]))
        checks.append(c)
        if len(fails) and (first_fail is None or s < first_fail.step):
            first_fail = c
    notes = []
    if len(C.loss) != len(R.loss):
        notes.append(f"the candidate ran {len(C.loss)} steps, the reference {len(R.loss)}")
    for r in roles:
        if r not in noise:
            notes.append(f"no noise run for the {r} ({roles[r].unavailable(spec)['noise']})")
    checks += _epoch_checks(C.result, R.result, judged, n, order.shape[1], spec, notes)
    checks += _restored_checks(C.result, R.result, judged, allowance, n, order.shape[1], spec, offs, notes)
    sec = section("trajectory", checks)
    if first_fail is not None:
        sec.first_failure = first_fail  # the earliest failing step, not the first tensor in the list
    sec.steps, sec.judged_steps = n, judged_steps
    _verdict(sec, n, judged, envelope, levels, notes)
    return Trajectory(sec, n, judged_steps, C, R, noise, np.max(np.stack([rel[k] for k in offs]), axis=0),
                      levels, envelope, allowance, judged, batches(order[:C.result.epochs_run], spec.batch_size))


def _steps_per_epoch(n_train, batch_size):
    return len(range(0, n_train, batch_size or n_train))


def _epoch_judged(epoch: int, judged, n, spe) -> bool:
    """Whether 1-based ``epoch`` ends on a judged step."""
    s = epoch * spe
    return s <= n and bool(judged[s])


def _epoch_checks(c, r, judged, n, n_train, spec, notes) -> list:
    spe, out = _steps_per_epoch(n_train, spec.batch_size), []
    for k in ("train_accuracy", "val_accuracy"):
        a, b = getattr(c, k), getattr(r, k)
        e = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))
        if e is not None:
            ok_here = not _epoch_judged(e + 1, judged, n, spe)
            notes.append(f"{k} differs first after epoch {e + 1}: candidate {a[e] if e < len(a) else None}, "
                         f"reference {b[e] if e < len(b) else None}" + (" (not judged there)" if ok_here else ""))
            if not ok_here:
                out.append(TensorCheck(k, None, [], float("inf"), float("inf"), 0.0, False, (e + 1) * spe))
    for k in ("epochs_run", "best_epoch", "stopped_early"):
        if getattr(c, k) != getattr(r, k):
            e = min(c.epochs_run, r.epochs_run)
            ok_here = not _epoch_judged(e, judged, n, spe)
            notes.append(f"{k} differs: candidate {getattr(c, k)}, reference {getattr(r, k)}"
                         + (" (not judged there)" if ok_here else ""))
            if not ok_here:
                out.append(TensorCheck(k, None, [], float("inf"), float("inf"), 0.0, False, e * spe))
    return out


def _restored_checks(c, r, judged, allowance, n, n_train, spec, offs, notes) -> list:
    if (c.restored is None) != (r.restored is None):
        notes.append(f"restored best weights: candidate {c.restored is not None}, reference {r.restored is not None}")
        return [TensorCheck("restored", None, [], float("inf"), float("inf"), 0.0, False)]
    spe = _steps_per_epoch(n_train, spec.batch_size)
    if c.restored is None or c.best_epoch != r.best_epoch or not _epoch_judged(c.best_epoch, judged, n, spe):
        return []
    s = c.best_epoch * spe
    floor = tol.group_floor(spec.dtype, *r.restored.values())
    out = []
    for k in offs:
        t = check_tensor(f"restored {k}", int(k[1:]), c.restored[k], r.restored[k], floor=floor, step=s)
        t.allowed = float(allowance[s])
        t.ok = bool(t.rel <= t.allowed)
        out.append(t)
    return out


def _verdict(sec: Section, n, judged, envelope, levels, notes) -> None:
    """agree / disagree / inconclusive, with the reason as the last note."""
    sec.notes = notes
    if not sec.agree:
        sec.verdict = "disagree"
        return
    if n == 0:
        sec.verdict = "inconclusive"
        sec.notes.append("no training step was run (epochs = 0): nothing to judge; give --epochs >= 1")
        return
    if sec.judged_steps < tol.MIN_JUDGED_FRACTION * n:
        stop = int(np.flatnonzero(~judged)[0])
        sides = ", ".join(f"{r} {levels[r][stop]:.1e}" for r in levels)
        sec.verdict = "inconclusive"
        sec.notes.append(f"judged {sec.judged_steps} of {n} steps: from step {stop} on the noise runs ({sides}) are more "
                         f"than {tol.ENVELOPE_LIMIT:g} apart from their own runs (rounding amplified by the dynamics), "
                         "so no comparison can tell a bug from chance there")
        return
    sec.verdict = "agree"
    if sec.judged_steps < n:
        stop = int(np.flatnonzero(~judged)[0])
        sec.notes.append(f"steps {stop}..{n} not judged: the noise envelope passes {tol.ENVELOPE_LIMIT:g} there "
                         f"({envelope[stop]:.1e}; rounding amplified by the dynamics)")
