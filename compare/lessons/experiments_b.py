"""Lessons 4-7: learning rate, GD vs SGD vs mini-batch, overfitting and its remedies, hidden size."""
from __future__ import annotations

import math

import numpy as np

from ..protocol import Data
from ..schedule import MaskSource
from ..spec import Spec
from .common import (
    Config,
    iris_data,
    no_dropout,
    shared_weights,
    steps_per_epoch,
    train,
)

SIDES = ("candidate", "reference")


def _both(cand, ref):
    return (("candidate", cand), ("reference", ref))


# ---- 4. learning rate ------------------------------------------------------------------------------
LEARNING_RATES = {"too small": 0.02, "about right": 0.2, "too large": 1.5, "far too large": 30.0}


def learning_rate(cand, ref, cfg: Config) -> dict:
    """GD on raw iris, quadratic cost (identity output, mse): the bowl in which eta's role is clearest."""
    data, _ = iris_data()
    out = {"shared": {"learning_rates": LEARNING_RATES, "epochs": cfg.lr_epochs, "output": "identity",
                      "loss": "mse", "activation": "sigmoid", "hidden": 6}, "candidate": {}, "reference": {}}
    w = shared_weights([4, 6, 3], seed=0)
    for label, lr in LEARNING_RATES.items():
        spec = Spec(hidden=(6,), activation="sigmoid", output="identity", loss="mse", lr=lr, epochs=cfg.lr_epochs)
        for side, impl in _both(cand, ref):
            rec = train(impl, spec, w, data)
            out[side][label] = {"loss": rec.loss, "diverged": rec.diverged is not None,
                                "diverged_after_steps": len(rec.loss) if rec.diverged else None,
                                "message": rec.diverged}
    return out


# ---- 5. GD vs SGD vs mini-batch ----------------------------------------------------------------------
BATCHES = {"GD (batch 120)": None, "mini-batch 10": 10, "SGD (batch 1)": 1}


def _checkpoints(total: int, per_epoch: int) -> list[int]:
    """Log-spaced steps and every epoch's last step (0-based)."""
    logs = np.unique(np.round(np.logspace(0, math.log10(total), 40)).astype(int)) - 1
    ends = np.arange(per_epoch - 1, total, per_epoch)
    return sorted(set(logs.tolist()) | set(ends.tolist()))


def batch_size(cand, ref, cfg: Config) -> dict:
    data, _ = iris_data()
    w = shared_weights([4, 6, 3], seed=0)
    lr = 0.1
    out = {"shared": {"lr": lr, "epochs": cfg.batch_epochs, "batches": BATCHES}, "candidate": {}, "reference": {}}
    for label, B in BATCHES.items():
        spec = Spec(hidden=(6,), activation="sigmoid", lr=lr, epochs=cfg.batch_epochs, batch_size=B)
        per = steps_per_epoch(120, B)
        total = per * spec.epochs
        marks = _checkpoints(total, per)
        want = set(marks)
        for side, impl in _both(cand, ref):
            rec = train(impl, spec, w, data, keep=want.__contains__)
            full = [impl.forward_backward(spec, rec.kept[s], data.X_train, data.y_train, None).loss for s in marks]
            ends = [full[marks.index(s)] for s in range(per - 1, total, per)]
            loss0 = impl.forward_backward(spec, w, data.X_train, data.y_train, None).loss
            out[side][label] = {"updates": [s + 1 for s in marks], "full_loss": full,
                                "loss_per_epoch": [loss0] + ends, "batch_loss": rec.loss}
    return out


# ---- 6. overfitting and its remedies ---------------------------------------------------------------
REMEDIES = {"none": {}, "L2 weight decay": {"weight_decay": 0.02}, "dropout": {"dropout": 0.5},
            "early stopping": {"patience": 25}}


def overfitting(cand, ref, cfg: Config) -> dict:
    """An over-sized 4-64-64-3 ReLU net on 5 flowers per class, validation = 20 other training flowers per
    class (early stopping watches it), test = the iris test split; the lecture's SGD: shuffled batches of 5.
    Standardised inputs (raw ones make this ReLU net jump between 0 and 1/3 error for tens of epochs)."""
    _, s = iris_data(standardize=True)
    rows = np.concatenate([np.arange(c * 40, c * 40 + 5) for c in range(3)])
    vrows = np.concatenate([np.arange(c * 40 + 20, c * 40 + 40) for c in range(3)])
    data = Data(s.X_train[rows], s.y_train[rows], s.X_train[vrows], s.y_train[vrows])
    w = shared_weights([4, 64, 64, 3], seed=0)
    out = {"shared": {"train_rows": s.train_rows[rows], "validation_rows": s.train_rows[vrows],
                      "hidden": [64, 64], "activation": "relu", "standardize": True, "batch_size": 5, "lr": 0.05,
                      "epochs": cfg.overfit_epochs, "remedies": REMEDIES}, "candidate": {}, "reference": {}}
    per = steps_per_epoch(len(rows), 5)
    for label, opts in REMEDIES.items():
        spec = Spec(hidden=(64, 64), activation="relu", lr=0.05, batch_size=5, epochs=cfg.overfit_epochs, **opts)
        masks = MaskSource(spec.dropout, spec.seed, spec.np_dtype) if spec.dropout else None
        for side, impl in _both(cand, ref):
            rec = train(impl, spec, w, data, keep=lambda st: st % per == per - 1, masks=masks)
            r = rec.result
            ev = no_dropout(spec)
            test_err = [1.0 - float(np.mean(impl.predict(ev, rec.kept[st], s.X_test)[1] == s.y_test))
                        for st in sorted(rec.kept)]
            final = r.restored if r.restored is not None else r.final
            out[side][label] = {
                "train_error": [1.0 - a for a in r.train_accuracy], "validation_error": [1.0 - a for a in r.val_accuracy],
                "test_error": test_err, "epochs_run": r.epochs_run, "stopped_early": r.stopped_early,
                "best_epoch": r.best_epoch,
                "final_test_error": 1.0 - float(np.mean(impl.predict(ev, final, s.X_test)[1] == s.y_test))}
    return out


# ---- 7. hidden size --------------------------------------------------------------------------------
def hidden_size(cand, ref, cfg: Config) -> dict:
    data, s = iris_data(standardize=True)
    lr = 1.0
    out = {"shared": {"widths": list(cfg.widths), "seeds": list(cfg.width_seeds), "epochs": cfg.width_epochs,
                      "lr": lr, "standardize": True, "rule": {"n": 4, "m": 3, "sqrt": math.sqrt(7), "a": [1, 10]}},
           "candidate": {"accuracy": [], "loss": []}, "reference": {"accuracy": [], "loss": []}}
    for h in cfg.widths:
        spec = Spec(hidden=(h,), activation="sigmoid", lr=lr, epochs=cfg.width_epochs)
        for side, impl in _both(cand, ref):
            acc, loss = [], []
            for seed in cfg.width_seeds:
                rec = train(impl, spec, shared_weights(spec.sizes, seed), data)
                fin = rec.result.final
                acc.append(float(np.mean(impl.predict(spec, fin, s.X_test)[1] == s.y_test)))
                loss.append(impl.forward_backward(spec, fin, data.X_train, data.y_train, None).loss)
            out[side]["accuracy"].append(acc)
            out[side]["loss"].append(loss)
    return out
