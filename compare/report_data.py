"""The report's computations beyond the check, by role: predictions on the test split, the slide's six
flowers, the replay of the schedule, and the per-step and summary data of a trajectory.

Everything goes through the protocol (``impl.predict``, ``impl.forward_backward``): no implementation
is imported here.  JSON keys name roles (``candidate``, ``reference``); the names of the implementations
are results.json's top-level ``candidate`` and ``reference``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from manual.weights import load_weights

from . import tolerances as tol
from .data import SLIDE_FLOWERS, SLIDE_LABELS, SLIDE_MISPRINTS, SLIDE_PROBS, slide_weights
from .trajectory import Trajectory

ROLES = ("candidate", "reference")


def label(name: str, role: str) -> str:
    """How text and legends name a side: ``torch (candidate)``."""
    return f"{name} ({role})"


def has_slide(spec) -> bool:
    """The slide's printed weights are a 4-6-3 network on iris's features: only a run on iris itself
    (not a --data file, even one holding iris) gets the slide's six flowers.  ``spec``: a Spec or
    results.json's config."""
    get = spec.get if isinstance(spec, dict) else lambda k: getattr(spec, k)  # a Spec, or results.json's config
    return get("dataset") == "iris" and not get("data_file")


def data_summary(spec, data) -> dict:
    """What the report says about the data: its name, sizes, class names, and the rows per class of each
    split (the split rule for a data set; the file's own split for --data)."""
    k = len(data.class_names)
    return {"name": data.name, "source": "file" if spec.data_file else "dataset",
            "n_features": int(data.X_train.shape[1]), "n_classes": k, "class_names": list(data.class_names),
            "n_train": int(data.y_train.shape[0]), "n_test": int(data.y_test.shape[0]),
            "train_per_class": np.bincount(data.y_train, minlength=k).tolist(),
            "test_per_class": np.bincount(data.y_test, minlength=k).tolist()}


def test_split_predictions(spec, traj: Trajectory, impls: dict, data) -> dict:
    """Each side's outputs on the test split, with the weights its trainer returned (restored or final)."""
    out = {"rows": data.test_rows.tolist(), "y": data.y_test.tolist()}
    for role in ROLES:
        res = getattr(traj, role).result
        w = res.restored if res.restored is not None else res.final
        a, pred = impls[role].predict(spec, w, data.X_test)
        pred = np.asarray(pred)
        out[role] = {"weights": "restored" if res.restored is not None else "final", "pred": pred.tolist(),
                     "output": np.asarray(a).tolist(), "correct": int(np.sum(pred == data.y_test)), "n": len(pred)}
    return out


def slide_flowers(spec, impls: dict) -> dict:
    """The slide's printed weights on its six flowers: both sides, and the printed probabilities."""
    w = slide_weights("float64")
    s = replace(spec, activation="sigmoid", gamma=None, output="softmax", loss="cross_entropy", hidden=(6,),
                dropout=0.0, dtype="float64", weights_file=None)
    X = SLIDE_FLOWERS.astype(np.float64)
    (pc, predicted), (pr, _) = (impls[r].predict(s, w, X) for r in ROLES)
    pc, pr = np.asarray(pc, dtype=np.float64), np.asarray(pr, dtype=np.float64)
    _, rel = tol.rel_error(pc, pr)
    rel_slide = np.abs(pc - SLIDE_PROBS) / np.abs(SLIDE_PROBS)
    ok = np.ones_like(rel_slide, dtype=bool)
    for i, j in SLIDE_MISPRINTS:
        ok[i, j] = False
    worst = float(rel_slide[ok].max())
    agree = bool(rel <= tol.FLOAT64_RTOL)
    return {"flowers": SLIDE_FLOWERS.tolist(), "labels": SLIDE_LABELS.tolist(), "printed": SLIDE_PROBS.tolist(),
            "candidate": pc.tolist(), "reference": pr.tolist(), "rel": rel, "allowed": tol.FLOAT64_RTOL,
            "verdict": "agree" if agree else "disagree", "agree": agree,
            "rel_to_printed": rel_slide.tolist(), "misprints": [list(m) for m in SLIDE_MISPRINTS],
            "max_rel_to_printed_excluding_misprints": worst,
            "significant_digits": int(round(-math.log10(worst))) if worst > 0 else 16,
            "predicted": np.asarray(predicted).tolist()}


def replay(spec, out: Path, schedule, data, candidate, allowed: float) -> dict | None:
    """Replay ``schedule`` with plain SGD (p -= lr * dC/dp, the candidate's ``forward_backward``) from the
    written init.safetensors and compare with both written final weight files: bit-identical or not, and
    the relative error judged against ``allowed`` (the trajectory's allowance at its last step; inf where
    that step was not judged).  Only for plain SGD without weight decay or dropout."""
    if spec.optimizer != "sgd" or spec.weight_decay or spec.dropout:
        return None
    w = load_weights(out / "init.safetensors")
    for rows in schedule:
        g = candidate.forward_backward(spec, w, data.X_train[rows], data.y_train[rows], None).grads
        w = {k: (v - np.asarray(spec.lr, dtype=v.dtype) * np.asarray(g[k], dtype=v.dtype)).astype(v.dtype)
             for k, v in w.items()}
    judged = math.isfinite(allowed)
    r = {"steps": len(schedule), "allowed": allowed, "judged": judged}
    for role in ROLES:
        f = load_weights(out / f"final-{role}.safetensors")
        floor = tol.group_floor(spec.dtype, *f.values())
        rel = max(tol.rel_error(w[k], f[k], floor)[1] for k in w)
        r[role] = {"file": f"final-{role}.safetensors", "bit_identical": all(np.array_equal(w[k], f[k]) for k in w),
                   "max_abs": max(float(np.max(np.abs(w[k].astype(np.float64) - f[k]))) for k in w),
                   "rel": rel, "ok": bool(rel <= allowed)}
    ok = all(r[role]["ok"] for role in ROLES)
    r["verdict"] = "disagree" if not ok else "agree" if judged else "inconclusive"
    return r


def per_step(traj: Trajectory) -> dict:
    return {"loss_candidate": traj.candidate.loss, "loss_reference": traj.reference.loss,
            "divergence": traj.divergence, "envelope": traj.envelope, "allowance": traj.allowance,
            "judged": [bool(j) for j in traj.judged],
            **{f"noise_{role}": traj.noise_per_step.get(role) for role in ROLES}}


def summary(traj: Trajectory) -> dict:
    d, n, sec = traj.divergence, traj.steps, traj.section
    c, r = traj.candidate.result, traj.reference.result
    ldiff = np.abs(traj.candidate.loss[:n] - traj.reference.loss[:n])
    unjudged = np.flatnonzero(~traj.judged)
    env = traj.envelope[traj.judged]
    return {"steps": n, "judged_steps": traj.judged_steps, "max_divergence": float(np.max(d)),
            "at_step": int(np.argmax(d)), "max_envelope_judged": float(np.max(env)) if env.size else None,
            "max_loss_abs_diff": float(np.max(ldiff)) if n else 0.0, "equal_loss_steps": int(np.sum(ldiff == 0)),
            "first_unjudged_step": int(unjudged[0]) if unjudged.size else None,
            "first_failing_step": None if sec.first_failure is None else sec.first_failure.step,
            "first_failure": None if sec.first_failure is None else asdict(sec.first_failure),
            **{k: {"candidate": getattr(c, a), "reference": getattr(r, a)} for k, a in (
                ("epochs_run", "epochs_run"), ("stopped_early", "stopped_early"), ("best_epoch", "best_epoch"),
                ("train_accuracy", "train_accuracy"), ("test_accuracy", "val_accuracy"))},
            "restored_best": {"candidate": c.restored is not None, "reference": r.restored is not None}}
