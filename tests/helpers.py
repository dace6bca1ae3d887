"""The one helper every equivalence case goes through, and the small data it runs on."""
from __future__ import annotations

import functools

import numpy as np

from compare.data import Split, iris_split
from compare.harness import data_for, initial_weights
from compare.passes import forward_and_gradients
from compare.registry import load
from compare.schedule import MaskSource
from compare.spec import Spec
from compare.trajectory import trajectory

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")
# every valid (output, loss) pair: cross-entropy is defined on softmax logits only
PAIRS = [("softmax", "cross_entropy")] + [(o, l) for o in ("softmax", "sigmoid", "identity")
                                          for l in ("mse", "l1", "hinge")]
# trajectories: every loss and every output at least twice, 7 of the 10 pairs (the suite must stay
# under 60 s on two cores; forward and gradients cover all 10)
TRAJECTORY_PAIRS = [("softmax", "cross_entropy"), ("softmax", "mse"), ("softmax", "hinge"), ("sigmoid", "mse"),
                    ("sigmoid", "l1"), ("identity", "l1"), ("identity", "hinge")]
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
BATCH = {"gd": None, "sgd": 1, "mini": 4}
# Steps per case: GD 2 (two epochs of the 6-flower split), mini-batch 2 (a batch of 4, then the
# ragged batch of 2), SGD 3 (one epoch of a 3-flower split, one flower per class).  Every regime takes
# >= 2 steps, so optimiser state is used; reshuffling across epochs is covered by the dropout,
# weight-decay and early-stopping cases.  (Each torch step costs ~1 ms of Python overhead: the
# suite's time is the number of steps.)
EPOCHS = {"gd": 2, "sgd": 1, "mini": 1}
ROWS_PER_CLASS = {"gd": 2, "sgd": 1, "mini": 2}
LR = {"sgd": 0.5, "momentum": 0.2, "nesterov": 0.2, "adam": 0.05}


@functools.lru_cache(maxsize=None)
def small_split(dtype: str, rows_per_class: int = 2) -> Split:
    """A few standardised iris flowers per class: a cheap problem with every class present."""
    s = iris_split(dtype, standardize=True)
    tr = np.concatenate([np.arange(c * 40, c * 40 + rows_per_class) for c in range(3)])
    te = np.concatenate([np.arange(c * 10, c * 10 + 1) for c in range(3)])
    return Split(s.X_train[tr], s.y_train[tr], s.X_test[te], s.y_test[te], s.train_rows[tr], s.test_rows[te])


def make_spec(activation="sigmoid", output="softmax", loss="cross_entropy", depth=2, dtype="float64",
              optimizer="sgd", batch="gd", epochs=None, hidden=5, **kw) -> Spec:
    if epochs is None:
        epochs = EPOCHS[batch] if isinstance(batch, str) else 2
    kw.setdefault("lr", LR[optimizer])
    return Spec(hidden=(hidden,) * (depth - 1) or (), activation=activation, output=output, loss=loss,
                optimizer=optimizer, batch_size=BATCH[batch] if isinstance(batch, str) else batch, epochs=epochs,
                dtype=dtype, seed=kw.pop("seed", 7), **kw)


def _masks(spec: Spec, data: Split):
    return MaskSource(spec.dropout, spec.seed, spec.dtype, stream=3).step_masks(0, spec.sizes, data.X_train.shape[0])


def impl(x):
    """An implementation from a name (cached: adapters are stateless) or the object itself."""
    return _load(x) if isinstance(x, str) else x


@functools.lru_cache(maxsize=None)
def _load(name):
    return load(name)


def describe(section) -> str:
    f = section.first_failure
    if f is None:
        return f"{section.name}: agrees"
    return (f"{section.name}: {f.tensor} (layer {f.layer}, step {f.step}) rel {f.rel:.3g} > allowed {f.allowed:.3g}; "
            f"candidate {f.candidate} vs reference {f.reference} at {f.index}; notes {section.notes}")


def check_passes(spec: Spec, data: Split | None = None, candidate="manual", reference="torch"):
    """The forward and gradient sections of ``spec`` (default data: the small split)."""
    data = data if data is not None else small_split(spec.dtype)
    return forward_and_gradients(impl(candidate), impl(reference), spec, initial_weights(spec), data.X_train,
                                 data.y_train, _masks(spec, data))


def check_trajectory(spec: Spec, data: Split | None = None, candidate="manual", reference="torch"):
    data = data if data is not None else small_split(spec.dtype)
    return trajectory(impl(candidate), impl(reference), spec, initial_weights(spec), data_for(spec, data))


def adam_float32_cancellation(spec: Spec) -> bool:
    """Adam in float32 may be honestly inconclusive: a gradient entry that cancels to ~eps32 x its
    terms (~1e-8, as large as Adam's eps) on one side and to 0 or another residue on the other is
    turned into steps that differ by ~lr; both noise runs show it from step 1 on."""
    return spec.optimizer == "adam" and spec.dtype == "float32"


def assert_noise_is_faithful(traj, dtype):
    """Two correct implementations differ by no more than the noise runs say rounding can explain:
    at every judged step, the candidate-reference divergence is within the envelope's allowance (the
    envelope is measured without looking at the other implementation)."""
    from compare import tolerances as tol

    d, env = traj.divergence, traj.envelope
    allowed = tol.TRAJECTORY_RTOL[dtype] + tol.ENVELOPE_FACTOR * env
    over = [t for t in range(1, len(d)) if traj.judged[t] and d[t] > allowed[t]]
    assert not over, f"divergence beyond {tol.ENVELOPE_FACTOR:g} x the noise envelope at steps {over[:5]}: " \
                     f"{[(float(d[t]), float(env[t])) for t in over[:3]]}"


def assert_agree(what=("forward", "gradients", "trajectory"), data=None, candidate="manual", reference="torch",
                 **kw):
    """One equivalence case: the candidate and the reference agree (forward and gradients on one
    batch, and/or a short training run, every step judged).  Returns the Trajectory when one was run."""
    spec = make_spec(**kw)
    if data is None and isinstance(kw.get("batch", "gd"), str):
        data = small_split(spec.dtype, ROWS_PER_CLASS[kw.get("batch", "gd")])
    sections, traj = [], None
    if "forward" in what or "gradients" in what:
        sections += check_passes(spec, data, candidate, reference)
    if "trajectory" in what:
        traj = check_trajectory(spec, data, candidate, reference)
        assert traj.steps > 0
        assert_noise_is_faithful(traj, spec.dtype)
        if traj.section.verdict == "inconclusive" and adam_float32_cancellation(spec):
            return traj
        sections.append(traj.section)
        assert traj.judged_steps == traj.steps, traj.section.notes
    for sec in sections:
        assert sec.agree, describe(sec)
    return traj


def zeroing_hook(in_place: bool):
    """A grad hook that zeroes every gradient: in place (handing the same arrays back), or as new arrays."""
    def zero(step, g):
        if in_place:
            for v in g.values():
                v[...] = 0
            return g
        return {k: np.zeros_like(v) for k, v in g.items()}
    return zero
