"""The rendezvous of the trajectory's runs (compare/lockstep.py): every step compared once, in order,
with every run still going; no run more than DEPTH steps ahead of the comparison; runs that end
early, and a comparison that fails, stop nobody else and hang nothing."""
import threading
import time

import numpy as np
import pytest

from compare.lockstep import DEPTH, Lockstep, PairSummary, run_all, tensor_scales


def _runs(lock, lengths, delays, ahead):
    def job(role, n, delay):
        def run():
            try:
                for s in range(n):
                    time.sleep(delay)
                    ahead[role] = max(ahead.get(role, 0), s - lock.completed)
                    lock.arrive(role, s, np.full(3, float(s)), float(s))
            finally:
                lock.finish(role)
        return run
    return {r: job(r, n, d) for (r, n), d in zip(lengths.items(), delays, strict=True)}


def test_every_step_is_compared_once_in_order_with_the_runs_still_going():
    seen = []
    lock = Lockstep(["a", "b", "c"], lambda step, slots: seen.append((step, sorted(slots))))
    ahead = {}
    out = run_all(_runs(lock, {"a": 30, "b": 20, "c": 30}, [0.0, 0.002, 0.0], ahead))
    lock.close()
    assert all(v is None for v in out.values()) and lock.error is None
    assert [s for s, _ in seen] == list(range(30))
    assert all(roles == ["a", "b", "c"] for s, roles in seen if s < 20)
    assert all(roles == ["a", "c"] for s, roles in seen if s >= 20)  # b ended after 20 steps
    assert max(ahead.values()) <= DEPTH + 1, ahead  # a fast run waits for the slow one: memory stays flat


def test_a_failing_comparison_stops_every_run_with_its_error():
    def compare(step, slots):
        if step == 5:
            raise ValueError("uncomparable")
    lock = Lockstep(["a", "b"], compare)
    t0 = time.perf_counter()
    out = run_all(_runs(lock, {"a": 1000, "b": 1000}, [0.0, 0.0], {}))
    lock.close()
    assert time.perf_counter() - t0 < 30
    assert isinstance(lock.error, ValueError)
    assert all(isinstance(e, RuntimeError) and "uncomparable" in str(e) for e in out.values())


def test_the_comparator_ends_when_the_runs_end_before_any_step():
    lock = Lockstep(["a", "b"], lambda step, slots: pytest.fail("nothing to compare"))
    for r in ("a", "b"):
        lock.finish(r)
    t = threading.Thread(target=lock.close)
    t.start()
    t.join(10)
    assert not t.is_alive()


def test_pair_summary_measures_each_tensor_against_its_own_scale_and_flags_non_finite_values():
    offs = {"W1": (0, 4, (2, 2)), "b1": (4, 6, (2,))}
    B = np.array([1.0, -2.0, 0.5, 0.25, 1e-3, 2e-3])
    A = B.copy()
    A[1] += 1e-9
    A[5] = np.nan
    p = PairSummary(offs, "float64", worst=True)
    p.add(A, B, 0.5, 0.5, tensor_scales(B, offs))
    assert p.rel["W1"][-1] == pytest.approx(1e-9 / 2.0, rel=1e-6)
    assert p.rel["b1"][-1] == np.inf and p.worst["b1"][-1][0] == [1]
    assert p.worst["W1"][-1][:3] == ([0, 1], A[1], B[1])


def test_an_interrupt_stops_every_run_and_waits_for_them_before_it_goes_on():
    """Ctrl-C during the trajectory: the runs stop at their next step and are waited for, so that the
    interpreter never exits under a thread that is inside torch (it aborted: 'terminate called
    without an active exception', exit 134)."""
    import os
    import signal

    from compare import Spec, check
    from manual.adapter import ManualImplementation

    started = threading.Event()

    class Signals(ManualImplementation):
        def train(self, spec, weights, data, order, masks, grad_hook, on_step):
            def step(s, w, loss):
                if s == 20:
                    started.set()
                on_step(s, w, loss)
            return super().train(spec, weights, data, order, masks, grad_hook, step)

    threading.Thread(target=lambda: (started.wait(60), os.kill(os.getpid(), signal.SIGINT)), daemon=True).start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        check(Signals(), "torch", Spec(epochs=100000))
    assert time.perf_counter() - t0 < 60
    assert not [t.name for t in threading.enumerate() if t.name.startswith("trajectory")]


def test_a_run_that_fails_before_its_first_step_stops_nobody():
    """A run whose setup raises (a MemoryError copying the weights) must still tell the rendezvous it is
    done; the other run trains to the end and every step it hands in is compared."""
    from compare import Spec
    from compare.data import iris_split
    from compare.harness import data_for, initial_weights
    from compare.schedule import epoch_orders
    from compare.trajectory import training_job
    from manual.adapter import ManualImplementation

    class Unreadable(dict):
        def items(self):
            raise MemoryError("copying the weights")

    spec = Spec(epochs=5)
    w, data = initial_weights(spec), data_for(spec, iris_split())
    order = epoch_orders(120, spec.epochs, None, spec.seed)
    seen = []
    lock = Lockstep(["a", "b"], lambda step, slots: seen.append(sorted(slots)))
    names = ["W1", "b1", "W2", "b2"]
    jobs = {"a": training_job(ManualImplementation(), "a", lock, spec, Unreadable(w), data, order, None, None, names),
            "b": training_job(ManualImplementation(), "b", lock, spec, w, data, order, None, None, names)}
    out = {}
    t = threading.Thread(target=lambda: out.update(run_all(jobs)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the rendezvous hung"
    lock.close()
    assert isinstance(out["a"], MemoryError) and not isinstance(out["b"], BaseException)
    assert seen == [["b"]] * 5
