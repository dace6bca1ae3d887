"""Training runs advanced in lockstep, compared step by step as they go: memory flat in the number
of steps.

Each run trains in its own thread; after every step it hands a copy of its weights to the
rendezvous and goes on, at most DEPTH steps ahead of the slowest run.  One comparator thread
compares each step once every run still going has handed it in, outside the rendezvous' lock, so
that the runs keep training meanwhile.  The comparison keeps, per step, only summaries: per tensor
the relative error, the worst entry's index and both values, and the loss.  No run's parameters
are kept beyond the DEPTH + 1 steps in flight (the same rendezvous hands the noise runs the
structural zeros of a step, see noise.noise_hook).
"""
from __future__ import annotations

import threading

import numpy as np

from .threads import one_torch_thread

DEPTH = 2  # how many steps a run may be ahead of the last compared step
# The pairs a trajectory compares: each run -> the run it is measured against.
PAIRED = {"candidate": "reference", "noise candidate": "candidate", "noise reference": "reference"}


def flat(w: dict, names) -> np.ndarray:
    return np.concatenate([np.asarray(w[k], dtype=np.float64).reshape(-1) for k in names])


def common_zeros(masks: list) -> dict:
    """name -> the entries zero in every one of ``masks`` (each name -> bool array, or None for no
    zero entry); None where they share none."""
    out = {}
    for k in masks[0]:
        ms = [m[k] for m in masks]
        z = None if any(m is None for m in ms) else np.logical_and.reduce(ms)
        out[k] = z if z is not None and z.any() else None
    return out


class Lockstep:
    """The rendezvous of the runs (roles) of one trajectory.  ``compare(step, slots)`` is called once
    per step, in order, by the comparator thread, with every arrived run's (flat weights, loss);
    ``close()`` waits for the last comparison."""

    def __init__(self, roles, compare, depth: int = DEPTH):
        self.cv = threading.Condition()
        self.roles, self.compare, self.depth = list(roles), compare, depth
        self.slots: dict[int, dict] = {}
        self.completed, self.done = -1, set()
        self.error: BaseException | None = None  # a comparison that failed: every run stops
        self.zeros: dict[int, dict] = {}   # step -> role -> {name: bool array}: the structural-zero rendezvous
        self.thread = threading.Thread(target=self._comparator, name="trajectory-compare", daemon=True)
        self.thread.start()

    def _ready(self) -> bool:
        arrived = self.slots.get(self.completed + 1, {})
        return bool(arrived) and all(r in arrived for r in self.roles if r not in self.done)

    def _comparator(self):
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self._ready() or len(self.done) == len(self.roles) or self.error is not None)
                if self.error is not None or not self._ready():
                    return  # aborted, or every run has finished and every step they handed in is compared
                step = self.completed + 1
                arrived = self.slots.pop(step)
            try:
                self.compare(step, arrived)
            except BaseException as e:  # noqa: BLE001  (a run handed something uncomparable: stop them all)
                with self.cv:
                    self.error = e
                    self.cv.notify_all()
                return
            with self.cv:
                self.zeros.pop(step - 1, None)
                self.completed = step
                self.cv.notify_all()

    def arrive(self, role, step, weights_flat, loss):
        with self.cv:
            self.slots.setdefault(step, {})[role] = (weights_flat, loss)
            self.cv.notify_all()  # the comparator, and a noise run waiting for this run's zeros of this step
            self.cv.wait_for(lambda: self.completed >= step - self.depth or self.error is not None)
            if self.error is not None:
                raise RuntimeError(f"the step-by-step comparison failed at step {step}: {self.error}")

    def finish(self, role):
        with self.cv:
            self.done.add(role)
            self.cv.notify_all()

    def abort(self, why: BaseException):
        """Stop every run at its next step (each one's arrive raises) and the comparator."""
        with self.cv:
            self.error = why
            self.cv.notify_all()

    def close(self):
        """Wait for the comparison of every step handed in (call after every run has finished)."""
        self.thread.join()

    def put_zeros(self, role, step, zeros):
        with self.cv:
            self.zeros.setdefault(step, {})[role] = zeros
            self.cv.notify_all()

    def structural(self, step, of_roles, own):
        """Entries zero at ``step`` in every run of ``of_roles`` still going (waits for them); ``own()``,
        the asking run's own zeros, where none of them is going."""
        def settled(r):  # r gave its zeros for this step, or can no longer (done, or past its hook: a run
            return (r in self.zeros.get(step, {}) or r in self.done  # that ignores grad_hook must not hang us)
                    or r in self.slots.get(step, {}) or self.completed >= step)

        with self.cv:
            self.cv.wait_for(lambda: self.error is not None or all(settled(r) for r in of_roles))
            got = [self.zeros[step][r] for r in of_roles if r in self.zeros.get(step, {})]
        return common_zeros(got) if got else own()


# Trajectories whose two real runs' flat weights and zero masks for every step fit in this many bytes run
# their four runs one after another in one thread (Sequential): small networks, whose steps are a few
# NumPy or torch calls, spend most of a threaded check in the GIL and the rendezvous' wake-ups
# (docs/benchmarks.md: 1k parameters x 1,000 steps, 4.7 s in lockstep threads, 1.7 s one after another).
SEQUENTIAL_BYTES = 256 * 2**20


class Sequential:
    """The rendezvous' interface (arrive, finish, put_zeros, structural) for runs made one after another:
    the reference, the candidate, then the noise runs.  The two real runs' flat weights and zero masks
    are kept per step, so that each later run is compared, step by step, against the run it pairs with:
    the same comparisons, per pair in the same order, as Lockstep (tests/test_lockstep.py checks that the
    two give identical trajectories)."""

    ORDER = ("reference", "candidate", "noise candidate", "noise reference")

    def __init__(self, compare):
        self.compare, self.error = compare, None
        self.kept: dict[str, list] = {"candidate": [], "reference": []}
        self.zeros: dict[str, dict] = {}

    def arrive(self, role, step, weights_flat, loss):
        slots = {role: (weights_flat, loss)}
        partner = PAIRED.get(role)
        if partner is not None and step < len(self.kept[partner]):
            slots[partner] = self.kept[partner][step]
        if role in self.kept:
            self.kept[role].append((weights_flat, loss))
        try:
            self.compare(step, slots)
        except Exception as e:  # noqa: BLE001  (a run handed something uncomparable: reported as Lockstep does)
            self.error = e
            raise RuntimeError(f"the step-by-step comparison failed at step {step}: {e}") from None

    def finish(self, role):
        pass

    def close(self):
        pass

    def put_zeros(self, role, step, zeros):
        self.zeros.setdefault(role, {})[step] = zeros

    def structural(self, step, of_roles, own):
        got = [self.zeros[r][step] for r in of_roles if step in self.zeros.get(r, {})]
        return common_zeros(got) if got else own()

    def run(self, jobs: dict) -> dict:
        """Each job in ORDER, in this thread; role -> result, or the exception it raised.  After a failed
        comparison the rest are not run (as Lockstep stops every run)."""
        out = {}
        for role in (r for r in self.ORDER if r in jobs):
            if self.error is not None:
                out[role] = RuntimeError("not run: the step-by-step comparison had failed")
                continue
            try:
                out[role] = jobs[role]()
            except Exception as e:  # noqa: BLE001  (handed back to the caller, who decides)
                out[role] = e
        return out


def run_all(jobs: dict, stop=None) -> dict:
    """Run ``jobs`` (role -> callable) in threads; role -> result, or the exception it raised.  On an
    interrupt (Ctrl-C) ``stop()`` is called and every thread is waited for before the interrupt goes on:
    an interpreter that exits while a thread is inside torch's C++ code aborts."""
    out = {}

    def work(role, fn):
        try:
            with one_torch_thread():   # the main thread's settings do not reach this one (threads.py)
                out[role] = fn()
        except BaseException as e:  # noqa: BLE001  (handed back to the caller, who decides)
            out[role] = e

    threads = [threading.Thread(target=work, args=(r, f), name=f"trajectory-{r}", daemon=True) for r, f in jobs.items()]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        if stop is not None:
            stop()
        for t in threads:
            t.join()
        raise
    return out
