"""Planted bugs: realistic BP mistakes injected into a copy of the manual computation.

Each bug must make the harness report a disagreement and name the right layer or step; the same
copy without a bug must agree (so the copy is faithful and the detection is the bug's doing).
"""
import sys

import numpy as np
import pytest

import manual
from helpers import check_passes, check_trajectory, make_spec
from manual import losses

train_module = sys.modules["manual.train"]  # `manual.train` is the function; this is its module
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


class LateMomentumSGD(manual.SGD):
    """Momentum buffer updated a step late: the step uses last step's buffer, then updates it."""

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.buf[i] is None:
                self.buf[i] = g.copy()
                p -= self.lr * g
            else:
                p -= self.lr * self.buf[i]
                self.buf[i] *= self.momentum
                self.buf[i] += g


class NoBiasCorrectionAdam(manual.Adam):
    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m += (1 - self.beta1) * (g - m)
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            p -= self.lr * (m / (np.sqrt(v) + self.eps))


class WrongSignWeightDecaySGD(manual.SGD):
    def step(self, grads):
        super().step([g - 2 * self.weight_decay * p for g, p in zip(grads, self.params)])


def _with_optimizer(cls):
    def make(name, params, lr, momentum=0.9, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        if cls is NoBiasCorrectionAdam:
            return cls(params, lr, betas, eps, weight_decay)
        return cls(params, lr, momentum if name != "sgd" else 0.0, name == "nesterov", weight_decay)
    return make


def _reversed_batches(real_train):
    def train(net, X, y, *, order=None, **kw):  # iterates each epoch's samples back to front
        return real_train(net, X, y, order=None if order is None else order[:, ::-1].copy(), **kw)
    return train


@pytest.fixture
def plant(monkeypatch):
    def apply(bug):
        monkeypatch.setattr(CopiedMLP, "bug", bug)
        monkeypatch.setattr(manual, "MLP", CopiedMLP)  # the harness builds manual.MLP at call time
        if bug == "momentum_late":
            monkeypatch.setattr(train_module, "make_optimizer", _with_optimizer(LateMomentumSGD))
        if bug == "adam_no_bias_correction":
            monkeypatch.setattr(train_module, "make_optimizer", _with_optimizer(NoBiasCorrectionAdam))
        if bug == "weight_decay_sign":
            monkeypatch.setattr(train_module, "make_optimizer", _with_optimizer(WrongSignWeightDecaySGD))
        if bug == "wrong_batch_order":
            monkeypatch.setattr(manual, "train", _reversed_batches(manual.train))
    return apply


BASE = dict(activation="tanh", depth=3, hidden=5)  # 4-5-5-3: W2 is square, so a missing transpose runs
# bug, spec overrides, section that must disagree, expected (layer, step) of the first disagreement
CASES = {
    "wrong_derivative": ({}, "gradients", dict(layer=2)),
    "weight_not_transposed": ({}, "gradients", dict(layer=1)),
    "missing_bias_gradient": ({}, "gradients", dict(layer=3, tensor="db3")),
    "sum_not_mean": ({}, "gradients", dict(layer=3, tensor="delta3")),
    "softmax_jacobian_diagonal": (dict(loss="mse"), "gradients", dict(layer=3, tensor="delta3")),
    "dropout_mask_missing": (dict(dropout=0.3), "gradients", dict(layer=2, tensor="delta2")),
    "wrong_batch_order": (dict(batch="mini", epochs=2), "trajectory", dict(step=1)),
    "momentum_late": (dict(optimizer="momentum", epochs=3), "trajectory", dict(step=2)),
    "adam_no_bias_correction": (dict(optimizer="adam"), "trajectory", dict(step=1)),
    "weight_decay_sign": (dict(weight_decay=0.01), "trajectory", dict(step=1)),
}


def _sections(spec, which):
    if which == "trajectory":
        return check_trajectory(spec).section
    fwd, grad = check_passes(spec)
    assert fwd.agree, "a backward-pass bug must not change the forward pass"
    return grad


@pytest.mark.parametrize("bug", list(CASES))
def test_planted_bug_is_caught_and_located(plant, bug):
    overrides, which, where = CASES[bug]
    spec = make_spec(**{**BASE, **overrides})
    plant(None)
    assert _sections(spec, which).agree, "the bug-free copy must agree"
    plant(bug)
    sec = _sections(spec, which)
    assert not sec.agree, f"planted bug {bug!r} was not detected"
    first = sec.first_failure
    for key, value in where.items():
        assert getattr(first, key) == value, f"{bug}: first disagreement {first}"
    if first.index:  # localised with both values
        assert first.manual != first.torch


def test_finite_differences_catch_a_wrong_derivative_without_torch(plant):
    """The third opinion: manual's BP against finite differences alone flags the planted bug."""
    from compare.harness import finite_difference_section, initial_weights
    from helpers import small_split

    spec = make_spec(**BASE)
    plant(None)
    assert finite_difference_section(spec, initial_weights(spec), small_split("float64"), None).agree
    plant("wrong_derivative")
    fd = finite_difference_section(spec, initial_weights(spec), small_split("float64"), None)
    assert not fd.agree and fd.first_failure.layer in (1, 2)
