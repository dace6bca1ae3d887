"""Training runs advanced in lockstep, compared step by step as they go: memory flat in the number
of steps.

Each run trains in its own thread; after every step it hands its weights to the comparison and
waits until every run still going has reached that step.  The comparison keeps, per step, only
summaries: per tensor the relative error, the worst entry's index and both values, and the loss.
No run's parameters are kept beyond the step being compared (the same thread-safe rendezvous
hands the noise runs the structural zeros of that step, see trajectory.noise_hook).
"""
from __future__ import annotations

import threading

import numpy as np

from . import tolerances as tol


def flat(w: dict, names) -> np.ndarray:
    return np.concatenate([np.asarray(w[k], dtype=np.float64).reshape(-1) for k in names])


class PairSummary:
    """Per step, ``a`` against ``b``: relative error per tensor (and the loss, normwise over the steps
    so far), and where ``worst`` is asked, the worst entry's index, both values and the max-abs."""

    def __init__(self, offs, dtype, worst: bool, input_scale: float = 1.0):
        self.offs, self.floor_rel, self.keep_worst = offs, tol.GROUP_FLOOR[str(np.dtype(dtype))], worst
        self.abs_floor = tol.PARAM_FLOOR[str(np.dtype(dtype))] / max(1.0, input_scale)  # see tolerances.py
        self.rel = {k: [0.0] for k in [*offs, "loss"]}
        self.worst = {k: [([], None, None, 0.0)] for k in offs}
        self.loss_scale = 0.0

    def add(self, A, B, loss_a, loss_b):
        with np.errstate(invalid="ignore", over="ignore"):
            fin_b = np.abs(np.where(np.isfinite(B), B, 0))
            floor = max(self.floor_rel * float(fin_b.max(initial=0.0)), self.abs_floor)
            for k, (s, e, shape) in self.offs.items():
                a, b = A[s:e], B[s:e]
                d = np.abs(a - b)
                if not (np.isfinite(a).all() and np.isfinite(b).all()):
                    r = np.inf
                else:
                    dm = float(d.max(initial=0.0))
                    r = 0.0 if dm == 0 else dm / max(float(fin_b[s:e].max(initial=0.0)), floor)
                self.rel[k].append(r)
                if self.keep_worst:
                    d = np.where(np.isfinite(d), d, np.inf)
                    i = int(np.argmax(d)) if d.size else 0
                    idx = [int(x) for x in np.unravel_index(i, shape)] if d.size else []
                    self.worst[k].append((idx, float(a[i]), float(b[i]), float(np.max(d, initial=0.0))))
            if np.isfinite(loss_b):
                self.loss_scale = max(self.loss_scale, abs(loss_b))
            r = 0.0 if loss_a == loss_b else abs(loss_a - loss_b) / self.loss_scale if self.loss_scale else np.inf
            self.rel["loss"].append(float(r) if np.isfinite(r) else np.inf)

    def arrays(self) -> dict:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.rel.items()}


class Lockstep:
    """The rendezvous of the runs (roles) of one trajectory.  ``compare(step, slots)`` is called once
    per step, by the last run to arrive, with every arrived run's (flat weights, loss)."""

    def __init__(self, roles, compare):
        self.cv = threading.Condition()
        self.roles, self.compare = list(roles), compare
        self.slots: dict[int, dict] = {}
        self.completed, self.done = -1, set()
        self.error: BaseException | None = None  # a comparison that failed: every run stops
        self.zeros: dict[int, dict] = {}   # step -> role -> {name: bool array}: the structural-zero rendezvous

    def _try_complete(self):
        while True:
            step = self.completed + 1
            arrived = self.slots.get(step, {})
            live = [r for r in self.roles if r not in self.done]
            if not arrived or any(r not in arrived for r in live):
                return
            try:
                self.compare(step, arrived)
            except BaseException as e:  # noqa: BLE001  (a run handed something uncomparable: stop them all)
                self.error = e
                self.cv.notify_all()
                raise
            del self.slots[step]
            self.zeros.pop(step - 1, None)
            self.completed = step
            self.cv.notify_all()

    def arrive(self, role, step, weights_flat, loss):
        with self.cv:
            self.slots.setdefault(step, {})[role] = (weights_flat, loss)
            self.cv.notify_all()  # a noise run waiting for this run's zeros of this step stops waiting
            self._try_complete()
            self.cv.wait_for(lambda: self.completed >= step or self.error is not None)
            if self.error is not None:
                raise RuntimeError(f"the step-by-step comparison failed at step {step}: {self.error}")

    def finish(self, role):
        with self.cv:
            self.done.add(role)
            self._try_complete()
            self.cv.notify_all()

    def put_zeros(self, role, step, zeros):
        with self.cv:
            self.zeros.setdefault(step, {})[role] = zeros
            self.cv.notify_all()

    def structural(self, step, of_roles, own):
        """Entries zero at ``step`` in every run of ``of_roles`` still going (waits for them)."""
        def settled(r):  # r gave its zeros for this step, or can no longer (done, or past its hook: a run
            return (r in self.zeros.get(step, {}) or r in self.done  # that ignores grad_hook must not hang us)
                    or r in self.slots.get(step, {}) or self.completed >= step)

        with self.cv:
            self.cv.wait_for(lambda: self.error is not None or all(settled(r) for r in of_roles))
            got = [self.zeros[step][r] for r in of_roles if r in self.zeros.get(step, {})]
        return {k: np.logical_and.reduce([z[k] for z in got]) for k in own} if got else own


def run_all(jobs: dict) -> dict:
    """Run ``jobs`` (role -> callable) in threads; role -> result, or the exception it raised."""
    out = {}

    def work(role, fn):
        try:
            out[role] = fn()
        except BaseException as e:  # noqa: BLE001  (handed back to the caller, who decides)
            out[role] = e

    threads = [threading.Thread(target=work, args=(r, f), name=f"trajectory-{r}", daemon=True) for r, f in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out
