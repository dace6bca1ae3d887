"""One figure per lesson (matplotlib, Agg).  Both implementations on every axes: the reference as a wide
pale line, the candidate as a thin dashed line on top of it, so that a disagreement shows as two lines."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

REF = {"lw": 3.2, "alpha": 0.35, "solid_capstyle": "round"}
CAND = {"lw": 1.2, "ls": (0, (4, 2))}
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _pair(ax, x, c, r, color, label=None, names=("candidate", "reference")):
    ax.plot(x, r, color=color, **REF)
    ax.plot(x, c, color=color, label=label, **CAND)


def _sides_legend(ax, names, loc="best"):
    from matplotlib.lines import Line2D
    h = [Line2D([], [], color="k", **REF, label=f"{names[1]} (reference)"),
         Line2D([], [], color="k", **CAND, label=f"{names[0]} (candidate)")]
    ax.legend(handles=h, loc=loc, fontsize=8, frameon=False)


def _two_legends(fig, axes, names, loc) -> bytes:
    """The curves' legend on the first panel, the sides' (line styles) on the second; the PNG."""
    axes[0].legend(fontsize=8, frameon=False)
    _sides_legend(axes[1], names, loc=loc)
    fig.tight_layout()
    return png(fig)


def activations(d, names):
    x = np.asarray(d["shared"]["x"])
    acts = list(d["candidate"])
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4), sharex=True)
    for ax, act in zip(axes.flat, acts, strict=False):
        c, r = d["candidate"][act], d["reference"][act]
        ax.plot(x, r["f"], color="0.6", lw=1, label="f(x)")
        _pair(ax, x, c["fprime"], r["fprime"], COLORS[0], "f'(x)")
        if "fprime_at_0" in c:
            ax.plot([0], [r["fprime_at_0"]], "o", ms=9, mfc="none", mec=COLORS[3], mew=2)
            ax.plot([0], [c["fprime_at_0"]], "x", ms=7, color=COLORS[3])
            ax.annotate(f"f'(0) = {c['fprime_at_0']:g}", (0, c["fprime_at_0"]),
                        (10, -16 if c["fprime_at_0"] > 0.5 else 12), textcoords="offset points",
                        color=COLORS[3], fontsize=9)
        ax.set_title(act)
        ax.axhline(0, color="0.85", lw=0.8, zorder=0)
        lo, hi = min(np.min(r["fprime"]), -0.1), max(1.2, np.max(r["fprime"]) * 1.1)
        ax.set_ylim(min(lo, -1.2 if act in ("tanh", "elu") else lo), hi)
    axes[0, 0].legend(fontsize=8, frameon=False, loc="upper left")
    _sides_legend(axes[1, 0], names, loc="upper left")
    for ax in axes[1]:
        ax.set_xlabel("x")
    fig.suptitle("f(x) (grey) and f'(x) = delta^1 / (W^2)^T delta^2, on [-6, 6]; kinks at 0 marked")
    fig.tight_layout()
    return png(fig)


def vanishing(d, names):
    sh = d["shared"]
    acts, depths = sh["activations"], sh["depths"]
    fig, axes = plt.subplots(2, len(acts) + 1, figsize=(14, 6.6), sharey="row")
    cmap = plt.get_cmap("viridis")
    for row, when in enumerate(("init", "trained")):
        for j, act in enumerate(acts):
            ax = axes[row, j]
            for i, k in enumerate(depths):
                c, r = d["candidate"][act][when][i], d["reference"][act][when][i]
                if r is None or c is None:
                    continue
                _pair(ax, np.arange(1, len(r) + 1), c, r, cmap(i / max(1, len(depths) - 1)),
                      f"{k} hidden" if row == 0 else None)
            ax.set_yscale("log")
            when_text = "at initialisation" if when == "init" else f"after {sh['epochs']} epochs"
            ax.set_title(f"{act}, {when_text}", fontsize=10)
            ax.set_xlabel("layer l")
        axes[row, 0].set_ylabel("||dC/dW^l||")
        ax = axes[row, -1]
        for j, act in enumerate(acts):
            r = [v[0] if v else np.nan for v in d["reference"][act][when]]
            c = [v[0] if v else np.nan for v in d["candidate"][act][when]]
            _pair(ax, depths, c, r, COLORS[j], act)
        ax.set_title("first layer against depth", fontsize=10)
        ax.set_xlabel("hidden layers k")
        ax.tick_params(labelleft=True)
    axes[0, 0].legend(fontsize=7, frameon=False, ncol=2)
    axes[0, -1].legend(fontsize=8, frameon=False)
    _sides_legend(axes[1, -1], names, loc="lower left")
    fig.suptitle(f"gradient norm per layer, 4-[8]xk-3 networks (k = {depths[0]}..{depths[-1]}), standardised iris")
    fig.tight_layout()
    return png(fig)


def symmetry(d, names):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    for ax, init in zip(axes[:2], ("equal", "random"), strict=False):
        c, r = np.asarray(d["candidate"][init]["W1_feature"]), np.asarray(d["reference"][init]["W1_feature"])
        for j in range(r.shape[1]):
            _pair(ax, np.arange(len(r)), c[:, j], r[:, j], COLORS[j % 10])
        ax.set_title(f"{init} initial weights: W1[j, petal length], j = 1..6", fontsize=10)
        ax.set_xlabel("step (GD)")
    ax = axes[2]
    for i, init in enumerate(("equal", "random")):
        c, r = (np.maximum(np.asarray(d[s][init]["spread"]), 1e-18) for s in ("candidate", "reference"))
        _pair(ax, np.arange(len(r)), c, r, COLORS[i + 3], f"{init} init")
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 10)
    ax.axhspan(1e-18, 1e-15, color="0.93", zorder=0)
    ax.text(2, 3e-18, "rounding level (exact 0 drawn at 1e-18)", fontsize=8, color="0.4")
    ax.set_title("largest difference between two hidden units", fontsize=10)
    ax.set_xlabel("step (GD)")
    ax.legend(fontsize=8, frameon=False, loc="center right")
    _sides_legend(axes[1], names, loc="lower left")
    fig.tight_layout()
    return png(fig)


TOP = 1e8   # losses above are drawn at this level (the diverging run reaches ~1e308)


def learning_rate(d, names):
    sh = d["shared"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, (label, lr) in enumerate(sh["learning_rates"].items()):
        c, r = d["candidate"][label], d["reference"][label]
        def clip(v):
            return np.minimum(np.asarray(v, dtype=float), TOP)
        _pair(ax, np.arange(len(r["loss"])), clip(c["loss"]), clip(r["loss"]), COLORS[i], f"eta = {lr:g} ({label})")
        if r["diverged"]:
            s = len(r["loss"]) - 1
            ax.plot([s], [TOP], "X", ms=11, color=COLORS[i], clip_on=False)
            ax.annotate(f"FloatingPointError after step {s}\n(last finite loss {r['loss'][-1]:.1e})", (s, TOP),
                        (10, -30), textcoords="offset points", color=COLORS[i], fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(top=TOP * 3)
    ax.set_xlabel("step (gradient descent: one step = one epoch)")
    ax.set_ylabel("training loss (mse)")
    ax.set_xlim(0, sh["epochs"] * 1.12)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    _sides_legend(ax.inset_axes([0.6, 0.45, 0.35, 0.2], frameon=False, xticks=[], yticks=[]), names)
    ax.set_title(f"GD on raw iris, 4-6-3 sigmoid, identity output, mse; losses above {TOP:.0e} drawn at it",
                 fontsize=10)
    fig.tight_layout()
    return png(fig)


def batch_size(d, names):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    for i, label in enumerate(d["shared"]["batches"]):
        c, r = d["candidate"][label], d["reference"][label]
        _pair(axes[0], np.arange(len(r["loss_per_epoch"])), c["loss_per_epoch"], r["loss_per_epoch"], COLORS[i], label)
        _pair(axes[1], r["updates"], c["full_loss"], r["full_loss"], COLORS[i], label)
    axes[0].set_xlabel("epoch (passes over the 120 training flowers)")
    axes[0].set_ylabel("loss on the whole training split")
    axes[1].set_xlabel("parameter updates (one gradient evaluation each, on its batch)")
    axes[1].set_xscale("log")
    return _two_legends(fig, axes, names, "lower left")


def overfitting(d, names):
    sh = d["shared"]
    fig, axes = plt.subplots(1, len(sh["remedies"]), figsize=(15, 4.2), sharey=True)
    for ax, label in zip(axes, sh["remedies"], strict=False):
        c, r = d["candidate"][label], d["reference"][label]
        for i, (key, what) in enumerate((("train_error", "train (15)"), ("validation_error", "validation (60)"),
                                         ("test_error", "test (30)"))):
            _pair(ax, np.arange(1, len(r[key]) + 1), c[key], r[key], COLORS[i], what)
        if r["stopped_early"]:
            ax.axvline(r["epochs_run"], color="k", lw=1)
            ax.axvline(r["best_epoch"], color="k", lw=1, ls=":")
            ax.text(r["epochs_run"], 0.55, f" stopped: epoch {r['epochs_run']}\n best (restored): {r['best_epoch']}",
                    fontsize=8)
        ax.set_title(f"{label}: final test error {r['final_test_error']:.1%}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_xlim(0, sh["epochs"])
    axes[0].set_ylabel("error rate")
    axes[0].set_ylim(-0.02, 0.7)
    return _two_legends(fig, axes, names, "upper right")


def hidden_size(d, names):
    sh = d["shared"]
    w = np.asarray(sh["widths"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    for ax, key, ylabel in ((axes[0], "accuracy", "test accuracy"), (axes[1], "loss", "final training loss")):
        for side, style, off in (("reference", REF, 0.0), ("candidate", CAND, 0.0)):
            v = np.asarray(d[side][key])
            ax.fill_between(w, v.min(1), v.max(1), color=COLORS[0], alpha=0.12 if side == "reference" else 0)
            ax.plot(w + off, v.mean(1), color=COLORS[0], marker="o" if side == "reference" else None, **style)
        lo, hi = sh["rule"]["sqrt"] + sh["rule"]["a"][0], sh["rule"]["sqrt"] + sh["rule"]["a"][1]
        ax.axvspan(lo, hi, color=COLORS[2], alpha=0.1)
        ax.text(lo + 0.1, 0.02, "sqrt(4+3) + a, a = 1..10", transform=ax.get_xaxis_transform(), fontsize=8,
                color=COLORS[2])
        ax.set_xlabel("hidden units")
        ax.set_ylabel(ylabel)
        ax.set_xticks(w)
    axes[1].set_yscale("log")
    _sides_legend(axes[0], names, loc="lower right")
    fig.suptitle(f"4-h-3 sigmoid nets, {sh['epochs']} epochs GD; mean and min-max over {len(sh['seeds'])} seeds")
    fig.tight_layout()
    return png(fig)


FIGURES = {"activations": activations, "vanishing": vanishing, "symmetry": symmetry, "lr": learning_rate,
           "batch": batch_size, "overfitting": overfitting, "hidden": hidden_size}
