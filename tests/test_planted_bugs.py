"""Planted bugs: realistic BP mistakes in a copy of the manual computation, behind an adapter.

Each bug must make the check report a disagreement and name the right layer, in either role; the
same copy without a bug must agree (so the copy is faithful and the detection is the bug's doing).
Training-loop bugs are in tests/test_trajectory_bugs.py.
"""

import numpy as np
import pytest

import manual
from compare import tolerances as tol
from compare.finite_differences import finite_differences
from compare.harness import initial_weights
from compare.schedule import MaskSource
from helpers import check_passes, make_spec, small_split
from manual import losses
from manual.adapter import ManualImplementation

DC_DA = {"mse": losses.mse_grad, "l1": losses.l1_grad, "hinge": losses.hinge_grad}  # dC/da^L


class CopiedMLP(manual.MLP):
    """A copy of manual.MLP.backprop with switchable bugs (bug=None is the faithful copy)."""

    bug = None

    def backprop(self, Y, y, masks=None):
        z, a, h, W, L, bug = self.z, self.a, self.h, self.W, self.L, self.bug
        masks = [None] * (L - 1) if masks is None else masks
        n = Y.shape[0]
        delta = [None] * (L + 1)
        if self.loss_name == "cross_entropy":
            delta[L] = (a[L] - Y) if bug == "sum_not_mean" else (a[L] - Y) / n
        else:
            g = DC_DA[self.loss_name](a[L], Y, y)
            delta[L] = g * a[L] if bug == "softmax_jacobian_diagonal" else self.output_fn.backprop(z[L], a[L], g)
        for l in range(L - 1, 0, -1):
            fprime = h[l] if bug == "wrong_derivative" else self.sigma.fprime(z[l], h[l])
            square = W[l + 1].shape[0] == W[l + 1].shape[1]  # where the mistake still runs unnoticed
            back = delta[l + 1] @ (W[l + 1].T if bug == "weight_not_transposed" and square else W[l + 1])
            delta[l] = fprime * back
            if masks[l - 1] is not None and bug != "dropout_mask_missing":
                delta[l] *= masks[l - 1]
        grads = []
        for l in range(1, L + 1):
            grads.append(delta[l].T @ a[l - 1])
            grads.append(np.zeros_like(self.b[l]) if bug == "missing_bias_gradient" else delta[l].sum(axis=0))
        self.delta = delta
        return grads


class CopiedManual(ManualImplementation):
    """An adapter around CopiedMLP: the seam through which a buggy port reaches the check."""

    def __init__(self, bug=None):
        super().__init__()
        self.bug, self.name = bug, f"manual-copy+{bug}"

    def _net(self, spec, weights):
        net = CopiedMLP.from_weights(weights, spec.activation, spec.output, spec.loss, gamma=spec.gamma)
        net.bug = self.bug
        return net


BASE = dict(activation="tanh", depth=3, hidden=5)  # 4-5-5-3: W2 is square, so a missing transpose runs
# bug, spec overrides, expected (layer, tensor) of the first disagreement in the gradients
CASES = {
    "wrong_derivative": ({}, dict(layer=2)),
    "weight_not_transposed": ({}, dict(layer=1)),
    "missing_bias_gradient": ({}, dict(layer=3, tensor="db3")),
    "sum_not_mean": ({}, dict(layer=3, tensor="delta3")),
    "softmax_jacobian_diagonal": (dict(loss="mse"), dict(layer=3, tensor="delta3")),
    "dropout_mask_missing": (dict(dropout=0.3), dict(layer=2, tensor="delta2")),
}


@pytest.mark.parametrize("role", ["candidate", "reference"])
@pytest.mark.parametrize("bug", list(CASES))
def test_planted_bug_is_caught_and_located(bug, role):
    overrides, where = CASES[bug]
    spec = make_spec(**{**BASE, **overrides})
    pair = lambda impl: (impl, "torch") if role == "candidate" else ("torch", impl)  # noqa: E731
    assert all(s.agree for s in check_passes(spec, None, *pair(CopiedManual(None)))), "the bug-free copy must agree"
    fwd, grad = check_passes(spec, None, *pair(CopiedManual(bug)))
    assert fwd.agree, "a backward-pass bug must not change the forward pass"
    assert not grad.agree, f"planted bug {bug!r} was not detected"
    first = grad.first_failure
    for key, value in where.items():
        assert getattr(first, key) == value, f"{bug}: first disagreement {first}"
    assert first.candidate != first.reference


def test_finite_differences_catch_a_wrong_derivative_without_torch():
    """The third opinion: a side's BP against finite differences of its own loss flags the bug alone."""
    spec = make_spec(**BASE)
    d = small_split("float64")
    fd = finite_differences({"candidate": CopiedManual(None)}, spec, initial_weights(spec), d.X_train, d.y_train, None)
    assert fd.agree
    fd = finite_differences({"candidate": CopiedManual("wrong_derivative")}, spec, initial_weights(spec), d.X_train,
                            d.y_train, None)
    assert not fd.agree and fd.first_failure.layer in (1, 2) and fd.first_failure.side == "candidate"
    f = fd.first_failure  # named by its place in the tensor, as the other sections name theirs
    assert len(f.index) == len(f.shape) and all(0 <= i < n for i, n in zip(f.index, f.shape, strict=True))


@pytest.mark.parametrize("role", ["candidate", "reference"])
@pytest.mark.parametrize("bug", list(CASES))
def test_finite_differences_along_random_directions_catch_every_planted_bug_in_a_wide_network(bug, role):
    """Above 400 parameters the finite differences follow 4 random directions per tensor instead of every
    coordinate: each planted BP bug still fails there, on the side that has it, and the faithful copy agrees."""
    spec = make_spec(**{**BASE, "hidden": 24, **CASES[bug][0]})  # 4-24-24-3: 795 parameters, W2 square
    d = small_split("float64")
    masks = MaskSource(spec.dropout, spec.seed, spec.dtype, stream=3).step_masks(0, spec.sizes, d.X_train.shape[0])
    w = initial_weights(spec)
    fd = finite_differences({role: CopiedManual(None)}, spec, w, d.X_train, d.y_train, masks)
    assert fd.agree, fd.first_failure
    assert "4 random directions per tensor per side (24 in all" in fd.notes[-1] and "795 parameters" in fd.notes[-1]
    fd = finite_differences({role: CopiedManual(bug)}, spec, w, d.X_train, d.y_train, masks)
    assert not fd.agree and fd.first_failure.side == role, f"planted bug {bug!r} was not caught"
    assert fd.first_failure.rel > 1e3 * fd.first_failure.allowed  # caught by far, not by a hair


@pytest.mark.parametrize("name", ["manual", "torch", "jax"])
def test_the_loss_alone_is_the_loss_of_the_full_pass(name):
    """Finite differences use an implementation's optional ``loss`` (a forward pass only) in place of
    ``forward_backward(...).loss``: the two must be the same number, with and without dropout masks."""
    from helpers import impl
    for dropout in (0.0, 0.3):
        spec = make_spec(**{**BASE, "dropout": dropout})
        d = small_split("float64")
        masks = MaskSource(spec.dropout, spec.seed, spec.dtype, stream=3).step_masks(0, spec.sizes, d.X_train.shape[0])
        i, w = impl(name), initial_weights(spec)
        full = i.forward_backward(spec, w, d.X_train, d.y_train, masks).loss
        assert i.forward_loss(spec, w, d.X_train, d.y_train, masks) == pytest.approx(full, rel=tol.FLOAT64_RTOL, abs=0)
