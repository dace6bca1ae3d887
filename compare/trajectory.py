"""Whole training runs, compared step by step against a measured noise envelope (tolerances.py).

Four runs with the same sample order and dropout masks: the candidate and the reference, and
each one's noise run (started one rounding error away, its gradients moved by rounding-sized
relative noise before every step).  Step t is judged when the envelope (the tighter side's
noise up to ENVELOPE_LEAD steps ahead) is at most ENVELOPE_LIMIT; its allowance is TRAJECTORY_RTOL + ENVELOPE_FACTOR x
envelope.  Epoch-level outcomes (accuracies, the early-stopping epoch, the restored weights) must
be identical for the epochs that end on a judged step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import tolerances as tol
from .lockstep import PAIRED, SEQUENTIAL_BYTES, Lockstep, Sequential, flat, run_all
from .noise import noise_hook, nudge, terms_scale, zero_recorder
from .protocol import Data, TrainResult, readonly
from .results import Section, TensorCheck, check_tensor, section
from .schedule import MaskSource, batches, epoch_orders
from .step_summary import PairSummary, compare_step, segment_starts
from .vocabulary import param_names


@dataclass
class Run:
    """One implementation's training run as the check keeps it: its result and the loss per step
    (its weights were compared step by step as it went, and not kept; see lockstep.py)."""
    result: TrainResult
    loss: np.ndarray
    dtype_slip: str | None = None  # on_step's weights in another dtype than the run's


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


def _offsets(weights) -> dict:
    """name -> (start, stop, shape) in the flattened W1, b1, W2, ... vector."""
    offs, i = {}, 0
    for k in param_names(len(weights) // 2):
        offs[k] = (i, i + weights[k].size, weights[k].shape)
        i += weights[k].size
    return offs


def training_job(impl, role, lock, spec, weights, data, order, masks, hook, names):
    """The callable that trains ``impl`` as ``role`` (in a thread, or in turn), handing every step to ``lock``.
    Each run gets its own copy of the weights (a port may update them in place) and read-only data."""
    def run():
        losses, slip = [], []

        def on_step(step, w, loss):
            if not losses:
                for k in names:
                    if np.shape(w[k]) != weights[k].shape:
                        raise ValueError(f"the {role} ({impl.name}) handed on_step {k} of shape {np.shape(w[k])}; the "
                                         f"network's {k} is {weights[k].shape} (see compare.protocol)")
                slip.extend(f"the {role} ({impl.name}) handed on_step {k} as {np.asarray(w[k]).dtype} in a "
                            f"{spec.dtype} run" for k in names if np.asarray(w[k]).dtype != spec.np_dtype)
            losses.append(loss)
            lock.arrive(role, step, flat(w, names), loss)

        try:  # whatever fails here, the rendezvous must learn that this run is done
            mine = {k: np.array(v) for k, v in weights.items()}
            seen = Data(*(readonly(a) for a in (data.X_train, data.y_train, data.X_val, data.y_val)))
            res = impl.train(spec, mine, seen, order, masks, hook, on_step)
        finally:
            lock.finish(role)
        if len(losses) != len(res.loss):
            raise RuntimeError(f"implementation {impl.name!r} called on_step {len(losses)} times for "
                               f"{len(res.loss)} recorded losses (see compare.protocol)")
        return Run(res, np.asarray(res.loss, dtype=np.float64), slip[0] if slip else None)
    return run


def keep_file(path: str, order, batch_size, start: np.ndarray):
    """``--keep-trajectory``: a float64 .npy array of shape (steps + 1, 2, parameters), row 0 the shared
    start, row s + 1 the candidate's [.., 0, ..] and the reference's [.., 1, ..] parameters after step s,
    flattened W1, b1, W2, ...; rows past a run's end stay NaN.  Written to PATH.partial as the run goes
    (a memory map: nothing is kept in memory) and renamed to PATH at the end."""
    steps = order.shape[0] * len(range(0, order.shape[1], batch_size or order.shape[1]))
    mm = np.lib.format.open_memmap(path + ".partial", mode="w+", dtype=np.float64, shape=(steps + 1, 2, start.size))
    mm[:] = np.nan
    mm[0, 0] = mm[0, 1] = start
    return mm


def _levels(summary: PairSummary, m: int, n: int) -> np.ndarray:
    """A noise run's distance from its own run, largest up to ENVELOPE_LEAD steps ahead, per step
    0..n (inf past the step m where either run ended)."""
    rel = summary.arrays()
    so_far = np.maximum.accumulate(np.max(np.stack([v[:m + 1] for v in rel.values()]), axis=0))
    level = np.full(n + 1, np.inf)
    k = min(m, n)
    level[:k + 1] = so_far[np.minimum(np.arange(k + 1) + tol.ENVELOPE_LEAD, m)]
    return level


def trajectory(candidate, reference, spec, weights, data: Data, masks: MaskSource | None = None,
               keep: str | None = None, mode: str | None = None) -> Trajectory:
    """Train both sides (and their noise runs) from ``weights`` and judge every step.  ``mode``:
    "lockstep" (the four runs in threads, compared as they go: memory flat in the steps) or "sequential"
    (one after another, two runs kept: small trajectories); None picks by SEQUENTIAL_BYTES.
    ``keep``: a .npy file that receives every step's parameters of both sides, as they go (see keep_file)."""
    n_train = data.X_train.shape[0]
    order = epoch_orders(n_train, spec.epochs, spec.batch_size, spec.seed)
    if masks is None and spec.dropout:
        masks = MaskSource(spec.dropout, spec.seed, spec.dtype)
    roles = {"candidate": candidate, "reference": reference}
    can_noise = [r for r, impl in roles.items() if "noise" not in impl.unavailable(spec)]
    offs, dt, names = _offsets(weights), spec.dtype, param_names(len(weights) // 2)
    scale = float(np.max(np.abs(data.X_train), initial=0.0))
    pairs = {"candidate": PairSummary(offs, dt, worst=True, input_scale=scale),
             **{f"noise {r}": PairSummary(offs, dt, worst=False, input_scale=scale) for r in can_noise}}

    noise_start = {r: nudge(weights, spec.seed, side) for side, r in enumerate(roles) if r in can_noise}
    terms = {r: terms_scale(roles[r], spec, weights, data) for r in can_noise}  # before any thread starts
    record = keep_file(keep, order, spec.batch_size, flat(weights, names)) if keep else None
    starts = segment_starts(offs)

    def compare(step, slots):  # a pair's rows stop at the first step where one of its runs has ended
        if record is not None and "candidate" in slots and "reference" in slots:
            record[step + 1, 0], record[step + 1, 1] = slots["candidate"][0], slots["reference"][0]
        going = {k: p for k, p in pairs.items() if len(p.rel["loss"]) == step + 1}
        compare_step({r: v for r, (v, _) in slots.items()}, {r: loss for r, (_, loss) in slots.items()}, going,
                     PAIRED, offs, starts)

    n_steps = order.shape[0] * len(range(0, n_train, spec.batch_size or n_train))
    if mode is None:
        mode = "sequential" if 2 * n_steps * sum(w.size for w in weights.values()) * 9 <= SEQUENTIAL_BYTES else "lockstep"
    lock = (Sequential(compare) if mode == "sequential"
            else Lockstep([*roles, *(f"noise {r}" for r in can_noise)], compare))
    jobs = {r: training_job(impl, r, lock, spec, weights, data, order, masks,
                    zero_recorder(lock, r) if r in can_noise else None, names) for r, impl in roles.items()}
    def structural(step, own):
        return lock.structural(step, can_noise, own)

    for side, (r, impl) in enumerate(roles.items()):
        if r in can_noise:
            jobs[f"noise {r}"] = training_job(impl, f"noise {r}", lock, spec, noise_start[r], data, order, masks,
                                              noise_hook(spec.seed, side, structural, terms[r]), names)
    try:
        out = lock.run(jobs) if mode == "sequential" else run_all(jobs, stop=lambda: lock.abort(KeyboardInterrupt("interrupted")))
    finally:
        lock.close()
    if lock.error is not None:
        raise RuntimeError(f"the step-by-step comparison failed: {type(lock.error).__name__}: {lock.error} "
                           "(an implementation handed on_step something other than (step, weights, loss); "
                           "see compare.protocol)")
    if record is not None:
        record.flush()
        del record
        os.replace(keep + ".partial", keep)
    for r in roles:  # the two real runs must finish; a noise run that diverges just ends its envelope
        if isinstance(out[r], BaseException):
            raise out[r]
    C, R = out["candidate"], out["reference"]
    noise = {r: out[f"noise {r}"] for r in can_noise if not isinstance(out[f"noise {r}"], BaseException)}
    n = min(len(C.loss), len(R.loss))
    rel = {k: v[:n + 1] for k, v in pairs["candidate"].arrays().items()}
    levels = {r: _levels(pairs[f"noise {r}"], len(pairs[f"noise {r}"].rel["loss"]) - 1, n) for r in can_noise}
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
            idx, cv, rv, ma = pairs["candidate"].worst[k][s]
            shape = list(offs[k][2])
        c = TensorCheck(k, None if k == "loss" else int(k[1:]), shape, ma, float(r[s]), float(allowance[s]),
                        not len(fails), s, idx, cv, rv, float(envelope[s]))
        checks.append(c)
        if len(fails) and (first_fail is None or s < first_fail.step):
            first_fail = c
    notes = []
    if len(C.loss) != len(R.loss):
        notes.append(f"the candidate ran {len(C.loss)} steps, the reference {len(R.loss)}")
    for r in roles:
        if r not in can_noise:
            notes.append(f"no noise run for the {r} ({roles[r].unavailable(spec)['noise']})")
        elif r not in noise:
            notes.append(f"the {r}'s noise run stopped: {out[f'noise {r}']}; its envelope ends there")
    for run in (C, R):
        if run.dtype_slip:
            notes.append(run.dtype_slip + ": an implementation computes in the dtype of the weights it is given "
                                          "(compare.protocol)")
            checks.append(TensorCheck("dtype", None, [], float("inf"), float("inf"), 0.0, False, 1))
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
        e = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))
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
