"""The rendezvous of the trajectory's runs (compare/lockstep.py): every step compared once, in order,
with every run still going; no run more than DEPTH steps ahead of the comparison; runs that end
early, and a comparison that fails, stop nobody else and hang nothing."""
import os
import signal
import threading
import time

import numpy as np
import pytest
from test_protocol import HandsNoLoss, IgnoresTheHook

import compare.trajectory as T
from compare import Spec
from compare.data import iris_split, load_split
from compare.harness import data_for, initial_weights, resolve
from compare.lockstep import DEPTH, SEQUENTIAL_BYTES, Lockstep, run_all
from compare.schedule import epoch_orders
from compare.step_summary import PairSummary, tensor_scales
from compare.trajectory import training_job, trajectory
from manual.adapter import ManualImplementation


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


    started = threading.Event()

    class Signals(ManualImplementation):
        def train(self, spec, weights, data, order, masks, grad_hook, on_step):
            def step(s, w, loss):
                if s == 20:
                    started.set()
                on_step(s, w, loss)
            return super().train(spec, weights, data, order, masks, grad_hook, step)


    spec = Spec(epochs=100000)
    threading.Thread(target=lambda: (started.wait(60), os.kill(os.getpid(), signal.SIGINT)), daemon=True).start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        trajectory(Signals(), resolve("torch", "reference"), spec, initial_weights(spec), data_for(spec, iris_split()),
                   mode="lockstep")
    assert time.perf_counter() - t0 < 60
    assert not [t.name for t in threading.enumerate() if t.name.startswith("trajectory")]


def test_a_run_that_fails_before_its_first_step_stops_nobody():
    """A run whose setup raises (a MemoryError copying the weights) must still tell the rendezvous it is
    done; the other run trains to the end and every step it hands in is compared."""

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


class NoNoise(ManualImplementation):
    """manual without noise runs (a port that cannot take a gradient hook)."""

    def unavailable(self, spec):
        return {"noise": "no gradient hook in this port"}


MODE_CASES = {
    "GD sigmoid": dict(hidden=(6,), epochs=200),
    "README example (relu, adam, dropout, early stopping, float32)": dict(
        activation="relu", hidden=(8, 8), optimizer="adam", lr=0.01, batch_size=10, dropout=0.2, patience=20,
        dtype="float32"),
    "momentum tanh mini-batches": dict(optimizer="momentum", activation="tanh", batch_size=10, epochs=20),
    "edge of stability (inconclusive)": dict(lr=0.5, epochs=300),
    "the candidate without noise runs": dict(optimizer="nesterov", batch_size=30, epochs=20, candidate=NoNoise),
    "wide enough for torch's kernels to go parallel": dict(hidden=(312, 312), batch_size=32, epochs=2),
}


@pytest.mark.parametrize("case", list(MODE_CASES))
def test_runs_one_after_another_give_the_same_trajectory_as_runs_in_lockstep(case, tmp_path):
    """Small trajectories run their four runs one after another (lockstep.Sequential); every number the
    verdict rests on must be what the threaded lockstep gives, bit for bit, the kept trajectory file too."""

    kw = dict(MODE_CASES[case])
    cand = kw.pop("candidate", None)
    spec = Spec(**kw)
    w, d = initial_weights(spec), data_for(spec, load_split(spec))
    got = {}
    for mode in ("lockstep", "sequential"):
        keep = str(tmp_path / f"{mode}.npy")
        c = cand() if cand else resolve("manual", "candidate")
        got[mode] = (trajectory(c, resolve("torch", "reference"), spec, w, d, keep=keep, mode=mode), np.load(keep))
    (a, ka), (b, kb) = got["lockstep"], got["sequential"]
    for k in ("divergence", "envelope", "allowance", "judged"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert a.noise_per_step.keys() == b.noise_per_step.keys()
    assert all(np.array_equal(a.noise_per_step[r], b.noise_per_step[r]) for r in a.noise_per_step)
    assert (a.section.verdict, a.judged_steps, a.steps, a.section.notes) == \
           (b.section.verdict, b.judged_steps, b.steps, b.section.notes)
    assert [(t.tensor, t.rel, t.step, t.index) for t in a.section.checks] == \
           [(t.tensor, t.rel, t.step, t.index) for t in b.section.checks]
    assert np.array_equal(ka, kb, equal_nan=True)
    assert a.judged_steps > 0


def test_the_mode_is_chosen_by_what_keeping_two_runs_would_cost(monkeypatch):
    seen = []
    monkeypatch.setattr(T, "Sequential", lambda compare, _real=T.Sequential: seen.append("sequential") or _real(compare))
    for spec in (Spec(epochs=3), Spec(hidden=(1000, 1000), epochs=20)):  # 51 params x 3 steps; 1M x 20
        need = 2 * 20 * sum(v.size for v in initial_weights(spec).values()) * 9
        trajectory(resolve("manual", "candidate"), resolve("torch", "reference"), spec, initial_weights(spec),
                   data_for(spec, iris_split()))
    assert seen == ["sequential"] and need > SEQUENTIAL_BYTES


@pytest.mark.parametrize("mode", ["lockstep", "sequential"])
def test_ports_that_break_the_protocol_neither_hang_nor_pass_in_either_mode(mode):
    """A port that never calls the gradient hook: its noise run is a second run, nothing waits for its
    zeros.  A port that hands on_step no loss: the comparison fails and every run stops with it."""


    spec = Spec(epochs=5)
    w, d = initial_weights(spec), data_for(spec, iris_split())
    out = {}

    def run(port):
        try:
            out[port.__name__] = trajectory(port(), resolve("torch", "reference"), spec, w, d, mode=mode)
        except Exception as e:  # noqa: BLE001
            out[port.__name__] = e

    for port in (IgnoresTheHook, HandsNoLoss):
        t = threading.Thread(target=run, args=(port,), daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), f"{port.__name__} hung the {mode} trajectory"
    assert out["IgnoresTheHook"].section.verdict == "agree" and out["IgnoresTheHook"].judged_steps == 5
    e = out["HandsNoLoss"]
    assert isinstance(e, RuntimeError) and "the step-by-step comparison failed: TypeError" in str(e), e
