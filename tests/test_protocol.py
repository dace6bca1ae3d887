"""The seam: any implementation of compare.protocol is checked with no change under compare/."""
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import manual
import torch_ref
from compare import Spec, check
from compare import vocabulary as V
from compare.protocol import Data
from compare.registry import ImplementationError, load, registered
from compare.testing import Disagreement, assert_agree
from manual.adapter import ManualImplementation

ROOT = Path(__file__).resolve().parents[1]


def test_every_implementation_covers_the_whole_vocabulary():
    assert manual.ACTIVATIONS == V.ACTIVATIONS and set(manual.OUTPUTS) == set(V.OUTPUTS)
    assert set(manual.LOSSES) == set(V.LOSSES) and tuple(manual.OPTIMIZERS) == V.OPTIMIZERS
    assert tuple(manual.INIT_SCHEMES) == V.INIT_SCHEMES
    assert set(torch_ref.ACTIVATIONS) == set(V.ACTIVATIONS) and set(torch_ref.OUTPUTS) == set(V.OUTPUTS)
    assert set(torch_ref.LOSSES) == set(V.LOSSES)
    from manual.activations import DEFAULT_GAMMA
    assert DEFAULT_GAMMA == V.DEFAULT_GAMMA
    jax_model = pytest.importorskip("jax_ref.model", reason="JAX not installed (pip install -e '.[jax]')")
    jax_train = importlib.import_module("jax_ref.train")  # jax_ref.train is also a function's name
    assert set(jax_model.ACTIVATIONS) == set(V.ACTIVATIONS) and set(jax_model.OUTPUTS) == set(V.OUTPUTS)
    assert set(jax_model.LOSSES) == set(V.LOSSES) and tuple(jax_train.OPTIMIZERS) == V.OPTIMIZERS
    assert jax_model.DEFAULT_GAMMA == V.DEFAULT_GAMMA


def test_the_builtins_are_registered_as_a_users_adapter_would_be():
    assert {"manual", "torch", "jax"} <= set(registered())
    assert load("manual").name == "manual" and load("torch").name == "torch"


def test_a_port_in_one_test_module_is_checked_with_no_change_under_compare():
    port = ROOT / "tests" / "ports" / "tiny_numpy.py"
    assert len(port.read_text().splitlines()) <= 150
    res, traj = check("tests.ports.tiny_numpy:TinyNumpy", "torch", Spec(epochs=20, activation="tanh"))
    assert res.verdict == "agree" and res.candidate == "tiny-numpy" and res.judged_steps == res.steps == 20
    assert [s.verdict for s in res.sections] == ["agree"] * 4


def test_sections_an_implementation_lacks_are_not_available_never_failures():
    res, traj = check("tests.ports.tiny_numpy:TinyNumpy", "manual", Spec(epochs=2, activation="relu"))
    fd = res.finite_differences  # a per-side section: the reference's own gradients are still checked
    assert [s.verdict for s in res.sections] == ["not available", "not available", "agree", "not available"]
    assert traj is None and all("not available: candidate only sigmoid/tanh" in " ".join(s.notes) for s in res.sections)
    assert {c.side for c in fd.checks} == {"reference"}
    assert res.verdict == "inconclusive" and not res.agree


class SumNotMean(ManualImplementation):
    def forward_backward(self, spec, weights, X, y, masks):
        p = super().forward_backward(spec, weights, X, y, masks)
        p.grads = {k: g * X.shape[0] for k, g in p.grads.items()}
        return p


def test_assert_agree_passes_and_names_the_first_divergence():
    assert assert_agree("manual", "torch", epochs=3).verdict == "agree"
    with pytest.raises(Disagreement) as e:
        assert_agree(SumNotMean(), "torch", epochs=3)
    msg = str(e.value)
    assert "gradients: first disagreement at layer 2, tensor dW2" in msg and "disagree" in msg.splitlines()[0]


def test_a_factory_that_is_not_an_implementation_is_refused():
    with pytest.raises(ImplementationError, match="lacks"):
        load("json:decoder", "candidate")


def test_compare_names_no_framework_and_imports_none():
    assert subprocess.run(["grep", "-rqi", "jax", str(ROOT / "compare")]).returncode == 1
    code = "import sys, compare.harness, compare.cli; print(sorted(m for m in ('torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


class IgnoresTheHook(ManualImplementation):
    """A port that never calls grad_hook (a protocol slip): its noise run is just a second run."""

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        return super().train(spec, weights, data, order, masks, None, on_step)


def test_an_implementation_that_ignores_the_gradient_hook_does_not_hang_the_check():
    import threading

    out = {}
    t = threading.Thread(target=lambda: out.update(r=check(IgnoresTheHook(), "torch", Spec(epochs=5))[0]), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the lockstep rendezvous hung"
    assert out["r"].verdict == "agree" and out["r"].judged_steps == 5


class HandsNoLoss(ManualImplementation):
    """A port whose on_step passes no loss: the comparison fails, and every run stops (no hang)."""

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        return super().train(spec, weights, data, order, masks, grad_hook, lambda s, w, loss: on_step(s, w, None))


def test_a_comparison_that_fails_stops_every_run_instead_of_hanging():
    import threading

    out = {}

    def run():
        try:
            check(HandsNoLoss(), "torch", Spec(epochs=5))
        except Exception as e:  # noqa: BLE001
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the lockstep rendezvous hung"
    assert isinstance(out["e"], RuntimeError) and "the step-by-step comparison failed: TypeError" in str(out["e"])



class HandsAShortTensor(ManualImplementation):
    """A port whose on_step hands b2 one entry short, from step ``FROM`` on (its final weights are right)."""
    FROM = 0

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        def short(step, w, loss):
            on_step(step, {**w, "b2": w["b2"][:-1]} if step >= self.FROM else w, loss)
        return super().train(spec, weights, data, order, masks, grad_hook, short)


@pytest.mark.parametrize("mode", ["sequential", "lockstep"])
@pytest.mark.parametrize("role", ["candidate", "reference"])
@pytest.mark.parametrize("start", [0, 1])
def test_a_port_that_hands_on_step_a_tensor_of_the_wrong_size_is_stopped_with_its_name(monkeypatch, mode, role, start):
    """Never an agreement over the entries that happen to line up: the first step's shapes are checked,
    and every step's vector length."""
    import compare.trajectory as T

    real = T.trajectory
    monkeypatch.setattr(T, "trajectory", lambda *a, **k: real(*a, **{**k, "mode": mode}))
    monkeypatch.setattr("compare.harness.trajectory", T.trajectory)
    port = type("Short", (HandsAShortTensor,), {"FROM": start})()
    pair = (port, "torch") if role == "candidate" else ("torch", port)
    with pytest.raises((ValueError, RuntimeError)) as e:
        check(*pair, Spec(epochs=3))
    message = str(e.value)
    if start == 0:
        assert f"the {role} (manual) handed on_step b2 of shape (2,); the network's b2 is (3,)" in message
    else:
        assert "the step-by-step comparison failed" in message and f"the {role}'s weights have 50 entries" in message
        assert "where the network has 51" in message and f"the {'reference' if role == 'candidate' else 'candidate'}'s" not in message


class Float64Always(ManualImplementation):
    """A port that computes in float64 whatever it is given (the JAX trap without x64 the other way round)."""

    def _net(self, spec, weights):
        return super()._net(spec, {k: np.asarray(v, np.float64) for k, v in weights.items()})

    def forward_backward(self, spec, weights, X, y, masks):
        return super().forward_backward(spec, weights, np.asarray(X, np.float64), y, masks)

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        data = Data(*(np.asarray(a, np.float64) if a.dtype.kind == "f" else a
                      for a in (data.X_train, data.y_train, data.X_val, data.y_val)))
        return super().train(spec, {k: np.asarray(v, np.float64) for k, v in weights.items()}, data, order, masks,
                             grad_hook, on_step)


@pytest.mark.parametrize("role", ["candidate", "reference"])
def test_a_side_that_computes_in_float64_in_a_float32_run_disagrees_and_is_named(role):
    """Its errors would be ~1e-16 against the float64 run, far below any float32 computation's: an
    agreement it cannot earn.  Every section that sees its arrays fails and says which side and dtype."""
    pair = (Float64Always(), "torch") if role == "candidate" else ("torch", Float64Always())
    res, _ = check(*pair, Spec(epochs=3, dtype="float32"))
    assert res.verdict == "disagree"
    for sec in (res.forward, res.gradients, res.trajectory):
        assert not sec.agree and any(f"the {role} (manual) " in n and "float64 in a float32 run" in n
                                     for n in sec.notes), sec.notes
    assert check(ManualImplementation(), "torch", Spec(epochs=3, dtype="float32"))[0].verdict == "agree"


class InPlace(ManualImplementation):
    """A correct port that keeps the weights it is handed as its own and updates them in place."""

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        def write_back(step, w, loss):
            for k in weights:
                weights[k][...] = w[k]
            on_step(step, w, loss)
        return super().train(spec, weights, data, order, masks, grad_hook, write_back)


class ChangesItsData(ManualImplementation):
    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        data.X_train *= 2
        return super().train(spec, weights, data, order, masks, grad_hook, on_step)


@pytest.mark.parametrize("role", ["candidate", "reference"])
def test_a_port_that_updates_its_weights_in_place_does_not_change_the_other_runs(role):
    """Each run trains on its own copy of the shared start, so an in-place port agrees in either role;
    the data is shared read-only, so a port that writes to it is stopped with numpy's own error."""
    pair = (InPlace(), "torch") if role == "candidate" else ("torch", InPlace())
    res, _ = check(*pair, Spec(epochs=5, optimizer="momentum", batch_size=30))
    assert res.verdict == "agree" and res.judged_steps == res.steps == 20
    with pytest.raises(ValueError, match="read-only"):
        check(ChangesItsData(), "torch", Spec(epochs=1))


class NoTraining(ManualImplementation):
    def unavailable(self, spec):
        return {"trajectory": "this port does not train", "noise": "this port does not train"}


def test_without_a_trajectory_the_verdict_line_says_what_was_judged_not_zero_of_zero_steps():
    from compare.cli import format_table

    res, _ = check(NoTraining(), "torch", Spec(epochs=3))
    assert res.verdict == "agree" and res.trajectory.verdict == "not available"
    assert format_table(res).splitlines()[-1] == (
        "AGREE: manual (candidate) vs torch (reference), judged forward, gradients, finite differences; no training "
        "step (the trajectory is not available: see its note) (float64)")


class CrashesInForward(ManualImplementation):
    def forward_backward(self, spec, weights, X, y, masks):
        return X @ np.ones((5, 2))  # the commonest porting crash: a shape mismatch


def test_an_exception_in_an_implementation_names_the_role_the_implementation_and_the_method(capsys):
    from compare.cli import main

    assert main(["check", "--candidate", "tests.test_protocol:CrashesInForward", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matmul" in err
    assert err.rstrip().endswith("(raised in the candidate (manual)'s forward_backward)"), err


class DoublesTheLoss(ManualImplementation):
    def forward_backward(self, spec, weights, X, y, masks):
        p = super().forward_backward(spec, weights, X, y, masks)
        p.loss *= 2
        return p


def test_a_disagreement_in_the_loss_is_named_without_a_layer():
    from compare.cli import format_table

    res, _ = check(DoublesTheLoss(), "torch", Spec(epochs=1))
    line = next(r for r in format_table(res).splitlines() if r.startswith("  first disagreement: loss"))
    assert "layer" not in line and line.startswith("  first disagreement: loss: manual "), line


class HoldsALossObject(ManualImplementation):
    """A port that keeps its framework's loss object as ``self.loss`` (a common idiom): not a protocol method."""

    def __init__(self):
        super().__init__()
        self.loss = lambda logits, target: 0.0


class WrongForwardLoss(ManualImplementation):
    def forward_loss(self, spec, weights, X, y, masks):
        return 2 * super().forward_loss(spec, weights, X, y, masks)


def test_finite_differences_use_forward_loss_only_where_it_is_the_loss_of_the_full_pass():
    res, _ = check(HoldsALossObject(), "torch", Spec(epochs=2))
    assert res.finite_differences.verdict == "agree"
    res, _ = check(WrongForwardLoss(), "torch", Spec(epochs=2))
    assert res.finite_differences.verdict == "agree"  # its gradients are right: measured with forward_backward
    assert any("manual's forward_loss gives" in n and "finite differences use forward_backward" in n
               for n in res.finite_differences.notes), res.finite_differences.notes


def test_a_loaded_implementation_can_be_copied_and_pickled():
    import copy
    import pickle

    impl = load("manual", "candidate")
    assert copy.copy(impl).name == "manual"
    assert pickle.loads(pickle.dumps(impl)).name == "manual"
