"""Training-loop bugs, planted on either side, are reported by the trajectory section itself.

Each bug lives in an adapter defined here (the seam a user's port goes through): a wrapper around
a real implementation that changes its training the way a porting slip would.  The same wrapper
without a bug must agree (so detection is the bug's doing), and the bug must be reported by the
trajectory section, at an early step, in float64 and float32, whichever role the buggy side plays.
"""
import sys
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

import manual
from compare.harness import check, data_for, initial_weights
from compare.spec import Spec
from compare.trajectory import trajectory
from helpers import small_split
from manual.adapter import ManualImplementation
from torch_ref.adapter import TorchImplementation

manual_train = sys.modules["manual.train"]    # `manual.train` is the function; these are the modules
torch_train = sys.modules["torch_ref.train"]


# ---- the bugs, as optimisers a port might write ----------------------------------------------
class LateMomentumSGD(manual.SGD):
    """Momentum buffer updated a step late: the step uses last step's buffer, then updates it."""

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads, strict=False)):
            g = g + self.weight_decay * p if self.weight_decay else g
            if self.buf[i] is None:
                self.buf[i] = g.copy()
                p -= self.lr * g
            else:
                p -= self.lr * self.buf[i]
                self.buf[i] *= self.momentum
                self.buf[i] += g


class DampenedSGD(manual.SGD):
    """Momentum with dampening 0.1 (buf = mu buf + 0.9 g): torch.optim.SGD's dampening, set by mistake."""

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads, strict=False)):
            g = g + self.weight_decay * p if self.weight_decay else g
            self.buf[i] = g.copy() if self.buf[i] is None else self.momentum * self.buf[i] + 0.9 * g
            p -= self.lr * (g + self.momentum * self.buf[i] if self.nesterov else self.buf[i])


class NoBiasCorrectionAdam(manual.Adam):
    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=False):
            g = g + self.weight_decay * p if self.weight_decay else g
            m += (1 - self.beta1) * (g - m)
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            p -= self.lr * (m / (np.sqrt(v) + self.eps))


class TorchLateMomentum(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum, nesterov, weight_decay):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad + group["weight_decay"] * p
                st = self.state[p]
                if "buf" not in st:
                    st["buf"] = g.clone()
                    p.add_(g, alpha=-group["lr"])
                else:
                    p.add_(st["buf"], alpha=-group["lr"])
                    st["buf"].mul_(group["momentum"]).add_(g)


class TorchNoBiasCorrectionAdam(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                g = p.grad + group["weight_decay"] * p
                st = self.state.setdefault(p, {})
                if "m" not in st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(st["m"], st["v"].sqrt().add_(group["eps"]), value=-group["lr"])


def _manual_optimizer(bug):
    def make(name, params, lr, momentum=0.9, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        if bug == "adam_no_bias_correction":
            return NoBiasCorrectionAdam(params, lr, betas, eps, weight_decay)
        cls = {"momentum_late": LateMomentumSGD, "momentum_dampening": DampenedSGD}[bug]
        return cls(params, lr, momentum, name == "nesterov", weight_decay)
    return make


def _torch_optimizer(bug):
    def make(name, params, lr, momentum=0.9, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        if bug == "adam_no_bias_correction":
            return TorchNoBiasCorrectionAdam(params, lr, betas, eps, weight_decay)
        if bug == "adam_eps_1e-7":  # Keras' default epsilon: a typical porting slip
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-7, weight_decay=weight_decay)
        if bug == "momentum_dampening":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=0.1, weight_decay=weight_decay)
        return TorchLateMomentum(params, lr, momentum, name == "nesterov", weight_decay)
    return make


OPTIMIZER_BUGS = ("momentum_late", "momentum_dampening", "adam_no_bias_correction", "adam_eps_1e-7")


class Planted:
    """An implementation with one training-loop bug planted into a real one (bug=None: faithful)."""

    def __init__(self, base, bug=None):
        self.base, self.bug = base, bug
        self.name = f"{base.name}+{bug}"

    def __getattr__(self, attr):  # info, unavailable, forward_backward, predict: the base's
        return getattr(self.base, attr)

    @contextmanager
    def planted(self):
        """Optimiser bugs live in the trainer's module for the whole check (its runs go in threads)."""
        if self.bug not in OPTIMIZER_BUGS:
            yield self
            return
        module, make = ((manual_train, _manual_optimizer(self.bug)) if isinstance(self.base, ManualImplementation)
                        else (torch_train, _torch_optimizer(self.bug)))
        real = module.make_optimizer
        module.make_optimizer = make
        try:
            yield self
        finally:
            module.make_optimizer = real

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        bug, current = self.bug, {"w": weights}
        if bug == "wrong_batch_order":      # each epoch's samples back to front
            order = order[:, ::-1].copy()
        if bug == "dropout_mask_of_wrong_step":
            real_masks = masks
            masks = lambda step, layer, shape: real_masks(step + 1, layer, shape)  # noqa: E731
        if bug == "double_lr":
            spec = replace(spec, lr=2 * spec.lr)
        if bug == "weight_decay_sign":      # adds -2 wd w to the gradient: the decay pushes outwards
            inner = grad_hook

            def grad_hook(step, grads):
                grads = inner(step, grads) if inner is not None else grads
                return {k: g - 2 * spec.weight_decay * np.asarray(current["w"][k], dtype=g.dtype)
                        for k, g in grads.items()}

            def on_step(step, w, loss, _outer=on_step):
                current["w"] = w
                _outer(step, w, loss)
        return self.base.train(spec, weights, data, order, masks, grad_hook, on_step)


CONFIGS = {  # the configurations people use, small enough for the suite
    "adam-relu-dropout-minibatch": dict(optimizer="adam", activation="relu", dropout=0.3, batch_size=3, lr=0.05,
                                        weight_decay=1e-3, hidden=(5, 5)),
    "momentum-tanh-minibatch": dict(optimizer="momentum", activation="tanh", batch_size=4, lr=0.1, weight_decay=1e-3,
                                    hidden=(5, 5)),
    "nesterov-tanh-minibatch": dict(optimizer="nesterov", activation="tanh", batch_size=4, lr=0.1, weight_decay=1e-3,
                                    hidden=(5, 5)),
    "gd-sigmoid": dict(optimizer="sgd", activation="sigmoid", lr=0.5, weight_decay=1e-3, hidden=(6,)),
}
APPLIES = {  # the bugs whose code path each configuration runs
    "adam-relu-dropout-minibatch": ["wrong_batch_order", "adam_no_bias_correction", "weight_decay_sign",
                                    "dropout_mask_of_wrong_step"],
    "momentum-tanh-minibatch": ["wrong_batch_order", "momentum_late", "momentum_dampening", "weight_decay_sign"],
    "nesterov-tanh-minibatch": ["wrong_batch_order", "momentum_late", "momentum_dampening", "weight_decay_sign"],
    "gd-sigmoid": ["weight_decay_sign", "double_lr"],
}
CASES = [(c, b) for c in CONFIGS for b in APPLIES[c]]
BASES = {"manual": ManualImplementation, "torch": TorchImplementation}


def _spec(config, dtype):
    return Spec(**CONFIGS[config], epochs=3, dtype=dtype, seed=3, standardize=True)


def _trajectory(spec, candidate, reference):
    data = small_split(spec.dtype, 2)
    return trajectory(candidate, reference, spec, initial_weights(spec), data_for(spec, data))


def _pair(buggy_side, bug):
    other = "torch" if buggy_side == "manual" else "manual"
    planted = Planted(BASES[buggy_side](), bug)
    return planted, BASES[other]()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("side", ["manual", "torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_faithful_wrapper_agrees(config, side, dtype):
    planted, other = _pair(side, None)
    traj = _trajectory(_spec(config, dtype), planted, other)
    assert traj.section.verdict == "agree" and traj.judged_steps == traj.steps, traj.section.notes


@pytest.mark.parametrize("role", ["candidate", "reference"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("side", ["manual", "torch"])
@pytest.mark.parametrize("config,bug", CASES)
def test_a_training_loop_bug_is_reported_by_the_trajectory(config, bug, side, dtype, role):
    planted, other = _pair(side, bug)
    cand, ref = (planted, other) if role == "candidate" else (other, planted)
    with planted.planted():
        sec = _trajectory(_spec(config, dtype), cand, ref).section
    assert sec.verdict == "disagree", f"{bug} on {side} as {role} not reported: {sec.notes}"
    assert sec.first_failure.step <= 3, sec.first_failure
    if sec.first_failure.index:
        assert sec.first_failure.candidate != sec.first_failure.reference


# ---- the cases that used to pass silently (issue 11), on shortened runs of the same settings -----------
README = dict(activation="relu", hidden=(8, 8), optimizer="adam", lr=0.01, batch_size=10, dropout=0.2, patience=20)
SILENT = {
    "adam without bias correction, README example": (README, "manual", "adam_no_bias_correction", 5),
    "adam without bias correction, xavier tanh": (dict(init="xavier", hidden=(16, 16), activation="tanh",
                                                       optimizer="adam", lr=0.01), "manual",
                                                  "adam_no_bias_correction", 20),
    "2x learning rate, xavier": (dict(init="xavier"), "manual", "double_lr", 20),
    "torch Adam with eps 1e-7, README example": (README, "torch", "adam_eps_1e-7", 5),
}


# torch Adam's eps 1e-7 moves each step by ~1e-8 of itself: below what float32 rounding can resolve
# on this run (the float32 trajectory allowance is 1e-5), so that case is a float64 check.
SILENT_CASES = [(c, d) for c in SILENT for d in ("float64", "float32") if not (d == "float32" and "eps" in c)]


@pytest.mark.parametrize("case,dtype", SILENT_CASES)
def test_the_formerly_silent_bugs_disagree(case, dtype):
    settings, side, bug, epochs = SILENT[case]
    spec = Spec(**settings, epochs=epochs, dtype=dtype)
    planted, other = _pair(side, bug)
    with planted.planted():
        res, _ = check(planted, other, spec)
    assert res.verdict == "disagree" and res.trajectory.verdict == "disagree", res.reason
