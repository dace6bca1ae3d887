"""The report's figures, drawn with matplotlib's object-oriented API on the Agg canvas (no display,
no pyplot state).  Every function takes plain arrays and returns the PNG as bytes."""
from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

MANUAL, TORCH, FLOOR, ALLOW, FAIL, FAIL_BAR = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#9467bd", "#e377c2"
ZERO = 1e-18  # where an exact 0 is drawn on a log axis


def _png(fig: Figure) -> bytes:
    """The figure as an 8-bit palette PNG at 90 dpi: a third of the size of matplotlib's RGBA PNG, and
    indistinguishable for line plots and bars."""
    from PIL import Image

    fig.set_dpi(90)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").quantize(128, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _log_decades(ax) -> None:
    """A log y axis with a tick and a grid line per decade only: minor ticks on a many-decade axis cost
    half the drawing time and add nothing readable."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())
    ax.grid(True, axis="y", alpha=0.3)


def _pos(x) -> np.ndarray:
    """Values for a log axis: exact zeros (and non-finite values) become gaps."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x) & (x > 0), x, np.nan)


def loss_curves(loss_manual, loss_torch, dtype: str) -> bytes:
    """The two training-loss curves overlaid, and their difference."""
    fig = Figure(figsize=(9, 5.6), layout="constrained")
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    steps = np.arange(1, len(loss_manual) + 1)
    top.plot(steps, loss_manual, color=MANUAL, lw=4, alpha=0.45, label="manual (NumPy)")
    top.plot(steps, loss_torch, color=TORCH, lw=1.4, ls="--", label="torch")
    top.set_yscale("log")
    top.set_ylabel("training loss (mean over the batch)")
    n = min(len(loss_manual), len(loss_torch))
    diff = np.abs(np.asarray(loss_manual[:n], dtype=np.float64) - np.asarray(loss_torch[:n], dtype=np.float64))
    top.set_title(f"Training loss per step, {dtype}: largest |manual − torch| = {float(np.max(diff)) if n else 0.0:.1e}")
    top.legend()
    top.grid(True, which="both", alpha=0.3)
    bot.plot(steps[:n], _pos(diff), color=FAIL, lw=1)
    bot.set_yscale("log")
    bot.set_xlabel("training step")
    bot.set_ylabel("|manual − torch|")
    zeros = int(np.sum(diff == 0))
    bot.set_title(f"absolute difference of the losses ({zeros} of {n} steps exactly equal, not drawn)", fontsize=10)
    bot.grid(True, which="both", alpha=0.3)
    return _png(fig)


def tensor_errors(panels: list[tuple[str, list[dict]]], dtype: str) -> bytes:
    """Bars of manual's relative error per tensor (log scale), one panel per section.
    Each item: {"tensor", "rel", "allowed", "floor" (float32: torch's own error, else None)}; a bar over its
    allowance is pink, an exact 0 hatched at the bottom, NaN/Inf a labelled bar above everything."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True,
                        width_ratios=[max(len(c), 1) for _, c in panels])[0]
    top, any_bad, any_floor = 0.0, False, False
    for ax, (title, checks) in zip(axes, panels):
        x = np.arange(len(checks))
        rel = np.array([c["rel"] for c in checks], dtype=np.float64)
        has_floor = any(c.get("floor") is not None for c in checks)
        w = 0.4 if has_floor else 0.7
        allowed = np.array([c["allowed"] for c in checks], dtype=np.float64)
        big = max(float(np.nanmax(np.where(np.isfinite(rel), rel, np.nan), initial=ZERO)), float(np.max(allowed)))
        shown = np.where(np.isfinite(rel), np.maximum(rel, ZERO), big * 100)  # NaN/Inf: a bar above everything
        bad = ~(rel <= allowed)
        any_bad |= bool(bad.any())
        bars = ax.bar(x - (w / 2 if has_floor else 0), shown, w, color=np.where(bad, FAIL_BAR, MANUAL))
        for b, r, y in zip(bars, rel, shown):
            if r == 0 or not np.isfinite(r):
                ax.annotate("0" if r == 0 else str(r), (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=8)
            if r == 0:
                b.set_hatch("//")
                b.set_alpha(0.4)
        if has_floor:
            fl = np.array([c["floor"] if c.get("floor") is not None else np.nan for c in checks], dtype=np.float64)
            ax.bar(x + w / 2, np.where(fl > 0, fl, ZERO), w, color=FLOOR)
            any_floor = True
        ax.scatter(x, allowed, marker="_", s=900, color=ALLOW, linewidths=2.5, zorder=3)
        _log_decades(ax)
        top = max(top, float(np.max(shown)), float(np.max(allowed)))
        ax.set_xticks(x, [c["tensor"] for c in checks], rotation=0)
        ax.set_title(title)
    axes[0].set_ylim(ZERO / 3, top * 1e4)
    axes[0].set_ylabel("normwise relative error  max|m−t| / max|t|")
    handles = [Patch(color=MANUAL, label="manual: relative error"),
               Line2D([], [], color=ALLOW, marker="_", ls="", markersize=14, mew=2.5, label="allowed")]
    handles += [Patch(color=FAIL_BAR, label="manual: over its allowance")] if any_bad else []
    handles += [Patch(color=FLOOR, label="torch's own error (noise floor)")] if any_floor else []
    axes[-1].legend(handles=handles, loc="upper right", fontsize=8, ncols=2)
    fig.suptitle(f"Per-layer errors of manual against torch, {dtype} (log scale; exact 0 hatched at {ZERO:g})")
    return _png(fig)


def divergence(panels: list[dict]) -> bytes:
    """Parameter divergence per step, one panel per dtype.  Each panel: {"title", "manual", "manual_label",
    "floor", "floor_label", "allowance", "first_failure" (step or None)}."""
    fig = Figure(figsize=(10, 4.6 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        steps = np.arange(len(p["manual"]))
        ax.plot(steps, _pos(p["manual"]), color=MANUAL, lw=1.2, label=p["manual_label"])
        ax.plot(steps, _pos(p["floor"]), color=FLOOR, lw=1.0, alpha=0.9, label=p["floor_label"])
        ax.plot(steps, _pos(p["allowance"]), color=ALLOW, lw=1.6, ls="--", label="allowance (the check's limit)")
        if p.get("horizon") is not None:
            ax.axvspan(p["horizon"], len(steps) - 1, color=FLOOR, alpha=0.15,
                       label=f"from step {p['horizon']}: rounding amplified, reported but not judged")
        if p.get("first_failure") is not None:
            ax.axvline(p["first_failure"], color=FAIL, lw=2, label=f"first failing step ({p['first_failure']})")
        _log_decades(ax)
        ax.set_xlabel("training step (0 = the shared initial weights)")
        ax.set_ylabel("relative error, max over tensors")
        ax.set_title(p["title"])
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def confusion(y_true, preds: dict[str, np.ndarray], class_names, title: str) -> bytes:
    """One confusion matrix per implementation on the test split, counts written in the cells."""
    k = len(class_names)
    fig = Figure(figsize=(4.2 * len(preds), 4.0), layout="constrained")
    axes = fig.subplots(1, len(preds), squeeze=False)[0]
    for ax, (name, pred) in zip(axes, preds.items()):
        cm = np.zeros((k, k), dtype=int)
        np.add.at(cm, (np.asarray(y_true), np.asarray(pred)), 1)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=13,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(k), class_names)
        ax.set_yticks(range(k), class_names, rotation=90, va="center")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: {int(np.trace(cm))}/{int(cm.sum())} correct")
    fig.suptitle(title)
    return _png(fig)


# ---- the report's four figures, from results.json's dict -------------------------------------
def _num(x) -> float:
    return float(x) if x is not None else float("nan")  # JSON keeps inf/nan as the strings "inf"/"nan"


def _divergence_panel(dtype: str, per_step: dict, summary: dict) -> dict:
    f32 = dtype == "float32"
    return {"dtype": dtype, "manual": [_num(x) for x in per_step["param_divergence"]],
            "floor": [_num(x) for x in per_step["noise_floor"]], "allowance": [_num(x) for x in per_step["allowance"]],
            "first_failure": summary["first_failing_step"], "horizon": summary.get("horizon"),
            "title": ("float32: both float32 runs against a float64 reference run" if f32
                      else "float64: manual against torch"),
            "manual_label": "manual float32 vs float64 reference" if f32 else "manual vs torch",
            "floor_label": ("noise floor: torch float32 (+ rounding noise) vs float64 reference" if f32
                            else "noise floor: torch 1 ulp away (+ rounding noise) vs torch")}


def report_figures(r: dict, names) -> dict[str, bytes]:
    """The figures ``names`` (of loss.png, errors.png, divergence.png, confusion.png) drawn from ``r``."""
    out, dtype = {}, r["config"]["dtype"]
    if "loss.png" in names:
        out["loss.png"] = loss_curves(r["per_step"]["loss_manual"], r["per_step"]["loss_torch"], dtype)
    if "errors.png" in names:
        def checks(sec):
            return [{"tensor": c["tensor"], "rel": _num(c["rel"]), "allowed": _num(c["allowed"]),
                     "floor": None if c["torch_rel"] is None else _num(c["torch_rel"])}
                    for c in sorted(r[sec]["checks"], key=lambda c: c["layer"] or 99)]
        out["errors.png"] = tensor_errors([("forward: z, a per layer, loss", checks("forward")),
                                           ("gradients: δ, ∂C/∂W, ∂C/∂b per layer", checks("gradients"))], dtype)
    if "divergence.png" in names:
        panels = [_divergence_panel(dtype, r["per_step"], r["trajectory_summary"])]
        if r.get("companion") and "per_step" in r["companion"]:
            c = r["companion"]
            panels.append(_divergence_panel(c["dtype"], c["per_step"], c["summary"]))
        out["divergence.png"] = divergence(sorted(panels, key=lambda p: p["dtype"], reverse=True))  # float64 on top
    if "confusion.png" in names:
        te = r["test"]
        out["confusion.png"] = confusion(te["y"], {f"manual ({te['manual']['weights']} weights)": te["manual"]["pred"],
                                                   f"torch ({te['torch']['weights']} weights)": te["torch"]["pred"]},
                                         r["class_names"], "Test split (30 flowers): true class vs predicted")
    return out
