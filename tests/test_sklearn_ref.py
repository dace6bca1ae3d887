"""scikit-learn's MLPClassifier as a partial implementation (sklearn_ref/adapter.py, issue 12): its
trajectories agree with torch's step by step where it can express the spec; forward, gradients and
finite differences (and any spec it cannot express) read "not available" with the reason, never a
failure; planted loading mistakes are caught."""
from pathlib import Path

import numpy as np
import pytest

from compare import Spec
from compare.harness import check, initial_weights
from compare.registry import load
from sklearn_ref.adapter import SklearnImplementation

SK = "sklearn_ref.adapter:SklearnImplementation"
ROOT = Path(__file__).resolve().parents[1]


def _steps(spec):
    return spec.epochs * len(range(0, 120, spec.batch_size or 120))


@pytest.mark.parametrize("kw", [
    dict(activation="sigmoid", optimizer="sgd", epochs=10),
    dict(activation="tanh", optimizer="momentum", epochs=4, batch_size=16),
    dict(activation="relu", optimizer="nesterov", epochs=3, batch_size=32, hidden=(5, 4)),
    dict(activation="sigmoid", optimizer="momentum", epochs=3, batch_size=50),  # a smaller last batch
    dict(activation="tanh", optimizer="nesterov", epochs=3, batch_size=16, dtype="float32"),
    dict(activation="relu", optimizer="sgd", epochs=1, batch_size=1, hidden=()),
], ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_the_trajectory_agrees_with_torch_at_every_step(kw):
    spec = Spec(**kw)
    res, traj = check(SK, "torch", spec)
    assert res.verdict == "agree" and res.reason is None and res.candidate == "sklearn"
    assert res.trajectory.verdict == "agree" and res.judged_steps == res.steps == _steps(spec)
    assert set(traj.noise) == {"reference"}  # the envelope is torch's noise run
    assert "no noise run for the candidate (cannot run the noise run: partial_fit exposes no gradient hook)" \
        in res.trajectory.notes
    assert traj.candidate.result.train_accuracy == traj.reference.result.train_accuracy
    assert [res.forward.verdict, res.gradients.verdict] == ["not available"] * 2
    assert "only a^L (predict_proba)" in res.forward.notes[0] and res.gradients.notes == res.forward.notes
    fd = res.finite_differences  # per side: torch's own gradients are still checked
    assert {c.side for c in fd.checks} == {"reference"}
    assert any(n.startswith("not available: candidate exposes no gradient") for n in fd.notes)


@pytest.mark.parametrize("kw, why", [
    (dict(optimizer="adam"), "epsilon = eps*sqrt(1-beta2^t)"),
    (dict(dropout=0.2), "MLPClassifier has no dropout"),
    (dict(activation="elu"), "identity, logistic, tanh and relu: no elu"),
    (dict(optimizer="momentum", weight_decay=1e-3), "never to the intercepts"),
    (dict(patience=3), "refused by partial_fit"),
    (dict(output="sigmoid", loss="mse"), "softmax + log-loss"),
])
def test_what_sklearn_cannot_express_is_not_available_and_inconclusive(kw, why):
    res, traj = check(SK, "torch", Spec(epochs=2, **kw))
    assert traj is None and res.trajectory.verdict == "not available"
    assert res.trajectory.notes[0].startswith("not available: candidate ") and why in res.trajectory.notes[0]
    assert res.verdict == "inconclusive" and "no section compares" in res.reason


def test_predictions_match_torch_and_the_entry_point_is_declared():
    spec = Spec(hidden=(4,), activation="tanh")
    w, X = initial_weights(spec), np.random.default_rng(0).normal(size=(20, 4))
    (pa, ca), (pb, cb) = load(SK).predict(spec, w, X), load("torch").predict(spec, w, X)
    np.testing.assert_allclose(pa, pb, rtol=1e-13, atol=1e-15)
    assert (ca == cb).all() and load(SK).name == "sklearn"
    text = (ROOT / "pyproject.toml").read_text()
    group = text.split('[project.entry-points."backprop_crosscheck.implementations"]')[1]
    assert f'\nsklearn = "{SK}"\n' in group.split("\n[")[0]  # registered as a user's package would (no tomllib on 3.10)
    with pytest.raises(NotImplementedError, match="only a"):
        load(SK).forward_backward(spec, w, X, np.zeros(20, dtype=np.int64), None)
    with pytest.raises(ValueError, match="softmax"):
        load(SK).predict(Spec(output="identity", loss="mse"), w, X)


class NotTransposed(SklearnImplementation):
    """Loads coefs_ = W^l instead of W^l.T: same shape only for a square layer."""

    def _classifier(self, spec, weights, X):
        clf = super()._classifier(spec, weights, X)
        clf.coefs_ = [c.T.copy() if c.shape[0] == c.shape[1] else c for c in clf.coefs_]
        return clf


class SklearnsDefaultNesterov(SklearnImplementation):
    """MLPClassifier's nesterovs_momentum defaults to True: "momentum" left at the default runs Nesterov,
    whose first step is -(1 + momentum) lr g instead of -lr g."""

    def _classifier(self, spec, weights, X):
        return super()._classifier(spec, weights, X).set_params(nesterovs_momentum=True)


class DummyVelocities(SklearnImplementation):
    """Step 0 through partial_fit too: the optimiser of the initialising partial_fit is kept, with the
    velocities of its dummy step (plain SGD never reads them, so only momentum shows it)."""

    def _classifier(self, spec, weights, X):
        clf = super()._classifier(spec, weights, X)
        clf.fit = lambda X, y, sample_weight: clf.set_params(warm_start=False, batch_size=len(X) - 3).partial_fit(
            X[sample_weight > 0], y[sample_weight > 0])
        return clf


@pytest.mark.parametrize("bug, kw, first", [
    (NotTransposed, dict(hidden=(4,)), "W1"),
    (SklearnsDefaultNesterov, dict(optimizer="momentum", batch_size=30), "W"),
    (DummyVelocities, dict(optimizer="nesterov", batch_size=30), "W"),
])
def test_a_planted_loading_mistake_is_caught(bug, kw, first):
    res, _ = check(bug(), "torch", Spec(epochs=3, **kw))
    assert res.verdict == "disagree" and res.trajectory.verdict == "disagree"
    f = res.trajectory.first_failure
    assert f.tensor.startswith(first) and f.step == 1  # the first update already differs
