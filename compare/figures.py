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

CAND, REF, FLOOR, ALLOW, FAIL, FAIL_BAR = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#9467bd", "#e377c2"
NOISE_CAND, NOISE_REF = "#17becf", "#2ca02c"
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


def loss_curves(loss_c, loss_r, labels: dict, dtype: str) -> bytes:
    """The two training-loss curves overlaid, and their difference; ``labels``: role -> legend text."""
    fig = Figure(figsize=(9, 5.6), layout="constrained")
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    steps = np.arange(1, len(loss_c) + 1)
    top.plot(steps, _pos(loss_c), color=CAND, lw=4, alpha=0.45, label=labels["candidate"])
    top.plot(np.arange(1, len(loss_r) + 1), _pos(loss_r), color=REF, lw=1.4, ls="--", label=labels["reference"])
    top.set_yscale("log")
    top.set_ylabel("training loss (mean over the batch)")
    n = min(len(loss_c), len(loss_r))
    diff = np.abs(np.asarray(loss_c[:n], dtype=np.float64) - np.asarray(loss_r[:n], dtype=np.float64))
    top.set_title(f"Training loss per step, {dtype}: largest |candidate − reference| = "
                  f"{float(np.max(diff)) if n else 0.0:.1e}")
    top.legend()
    top.grid(True, which="both", alpha=0.3)
    bot.plot(steps[:n], _pos(diff), color=FAIL, lw=1)
    bot.set_yscale("log")
    bot.set_xlabel("training step")
    bot.set_ylabel("|candidate − reference|")
    zeros = int(np.sum(diff == 0))
    bot.set_title(f"absolute difference of the losses ({zeros} of {n} steps exactly equal, not drawn)", fontsize=10)
    bot.grid(True, which="both", alpha=0.3)
    return _png(fig)


def tensor_errors(panels: list[tuple[str, list[dict]]], dtype: str, names: dict) -> bytes:
    """Bars of the candidate's relative error per tensor (log scale), one panel per section; ``names``:
    role -> implementation name.  Each item: {"tensor", "rel", "allowed", "floor" (float32: the noise
    floor, the tighter side's own float32 error; else None)}; a bar over its
    allowance is pink, an exact 0 hatched at the bottom, NaN/Inf a labelled bar above everything."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True,
                        width_ratios=[max(len(c), 1) for _, c in panels])[0]
    top, any_bad, any_floor = 0.0, False, False
    for ax, (title, checks) in zip(axes, panels, strict=False):
        if not checks:  # a section neither side could run
            ax.set_title(title)
            continue
        x = np.arange(len(checks))
        rel = np.array([c["rel"] for c in checks], dtype=np.float64)
        has_floor = any(c.get("floor") is not None for c in checks)
        w = 0.4 if has_floor else 0.7
        allowed = np.array([c["allowed"] for c in checks], dtype=np.float64)
        big = max(float(np.nanmax(np.where(np.isfinite(rel), rel, np.nan), initial=ZERO)), float(np.max(allowed)))
        shown = np.where(np.isfinite(rel), np.maximum(rel, ZERO), big * 100)  # NaN/Inf: a bar above everything
        bad = ~(rel <= allowed)
        any_bad |= bool(bad.any())
        bars = ax.bar(x - (w / 2 if has_floor else 0), shown, w, color=np.where(bad, FAIL_BAR, CAND))
        for b, r, y in zip(bars, rel, shown, strict=False):
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
    axes[0].set_ylim(ZERO / 3, max(top, ZERO) * 1e4)
    axes[0].set_ylabel("normwise relative error  max|c−r| / max|r|")
    cand = f"{names['candidate']} (candidate)"
    handles = [Patch(color=CAND, label=f"{cand}: relative error"),
               Line2D([], [], color=ALLOW, marker="_", ls="", markersize=14, mew=2.5, label="allowed")]
    handles += [Patch(color=FAIL_BAR, label=f"{cand}: over its allowance")] if any_bad else []
    handles += [Patch(color=FLOOR, label="noise floor (the tighter side's own float32 error)")] if any_floor else []
    axes[-1].legend(handles=handles, loc="upper right", fontsize=8, ncols=2)
    fig.suptitle(f"Per-layer errors of {cand} against {names['reference']} (reference), {dtype} "
                 f"(log scale; exact 0 hatched at {ZERO:g})")
    return _png(fig)


def _unjudged_spans(judged) -> list[tuple[int, int]]:
    """(first, last) of every run of consecutive steps that were not judged."""
    j = np.asarray(judged, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~j).astype(int), [0]])))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=False)]


def divergence(panels: list[dict]) -> bytes:
    """Per step, one panel per dtype: the candidate-reference divergence, each side's noise level, the
    allowance, the steps not judged shaded.  Each panel: {"title", "divergence", "noise" (label -> per
    step), "allowance", "judged", "first_failure" (step or None), "verdict", "pair", "steps", "judged_steps"}."""
    fig = Figure(figsize=(10, 5.4 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels, strict=False):
        steps = np.arange(len(p["divergence"]))
        ax.plot(steps, _pos(p["divergence"]), color=CAND, lw=1.4, label=f"divergence: {p['pair']}")
        for (lab, lev), col in zip(p["noise"].items(), (NOISE_CAND, NOISE_REF), strict=False):
            ax.plot(np.arange(len(lev)), _pos(lev), color=col, lw=1.3, ls="-.", label=lab)
        ax.plot(steps, _pos(p["allowance"]), color=ALLOW, lw=1.6, ls="--",
                label="allowance (the check's limit, from the tighter noise envelope)")
        spans = _unjudged_spans(p["judged"])
        for i, (s0, s1) in enumerate(spans):
            ax.axvspan(s0 - 0.5, s1 + 0.5, color=FLOOR, alpha=0.18, lw=0,
                       label=None if i else f"not judged ({sum(b - a + 1 for a, b in spans)} steps): the noise "
                                            "runs drift too far, a bug cannot be told from chance")
        if p.get("first_failure") is not None:
            ax.axvline(p["first_failure"], color=FAIL, lw=2, label=f"first failing step ({p['first_failure']})")
        _log_decades(ax)
        ax.set_xlabel("training step (0 = the shared initial weights)")
        ax.set_ylabel("relative error, max over tensors")
        ax.set_title(f"{p['title']}: {p['pair']}: {p['verdict'].upper()}, judged {p['judged_steps']} of {p['steps']} "
                     "steps")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    return _png(fig)


def confusion(y_true, preds: dict[str, np.ndarray], class_names, title: str) -> bytes:
    """One confusion matrix per implementation on the test split, counts written in the cells (up to 20
    classes; the panel grows with the number of classes, the numbers shrink)."""
    k = len(class_names)
    side = max(4.2, 0.42 * k + 1.8)
    fig = Figure(figsize=(side * len(preds), side - 0.2), layout="constrained")
    axes = fig.subplots(1, len(preds), squeeze=False)[0]
    size = 13 if k <= 5 else 10 if k <= 12 else 7
    slanted = k > 3 and max(map(len, class_names)) > 3  # long names on many columns: slant them
    for ax, (name, pred) in zip(axes, preds.items(), strict=False):
        cm = np.zeros((k, k), dtype=int)
        np.add.at(cm, (np.asarray(y_true), np.asarray(pred)), 1)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
        if slanted:
            ax.set_xticks(range(k), class_names, rotation=45, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(range(k), class_names)
        if k <= 3:
            ax.set_yticks(range(k), class_names, rotation=90, va="center")
        else:
            ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: {int(np.trace(cm))}/{int(cm.sum())} correct")
    fig.suptitle(title)
    return _png(fig)


# ---- the report's four figures, from results.json's dict -------------------------------------
def _num(x) -> float:
    return float(x) if x is not None else float("nan")  # JSON keeps inf/nan as the strings "inf"/"nan"


def _floats(xs) -> list[float]:
    return [_num(x) for x in xs] if xs is not None else []


def _divergence_panel(dtype: str, names: dict, per_step: dict, summary: dict, verdict: str) -> dict:
    noise = {f"noise level: {names[role]} ({role}) 1 ulp away + rounding noise, vs its own run":
             _floats(per_step[f"noise_{role}"]) for role in ("candidate", "reference") if per_step[f"noise_{role}"]}
    return {"dtype": dtype, "divergence": _floats(per_step["divergence"]), "noise": noise,
            "allowance": _floats(per_step["allowance"]), "judged": per_step["judged"],
            "first_failure": summary["first_failing_step"], "verdict": verdict, "steps": summary["steps"],
            "judged_steps": summary["judged_steps"],
            "pair": f"{names['candidate']} (candidate) vs {names['reference']} (reference)", "title": dtype}


def report_figures(r: dict, names) -> dict[str, bytes]:
    """The figures ``names`` (of loss.png, errors.png, divergence.png, confusion.png) drawn from ``r``."""
    out, dtype = {}, r["config"]["dtype"]
    who = {role: r[role] for role in ("candidate", "reference")}
    labels = {role: f"{who[role]} ({role})" for role in who}
    if "loss.png" in names:
        out["loss.png"] = loss_curves(r["per_step"]["loss_candidate"], r["per_step"]["loss_reference"], labels, dtype)
    if "errors.png" in names:
        def checks(sec):
            return [{"tensor": c["tensor"], "rel": _num(c["rel"]), "allowed": _num(c["allowed"]),
                     "floor": None if c["noise"] is None else _num(c["noise"])}
                    for c in sorted(r[sec]["checks"], key=lambda c: c["layer"] or 99)]
        panels = [(t, checks(k)) for t, k in (("forward: z, a per layer, loss", "forward"),
                                              ("gradients: δ, ∂C/∂W, ∂C/∂b per layer", "gradients"))
                  if r[k]["checks"]]
        out["errors.png"] = tensor_errors(panels or [("not available", [])], dtype, who)
    if "divergence.png" in names:
        panels = [_divergence_panel(dtype, who, r["per_step"], r["trajectory_summary"], r["trajectory"]["verdict"])]
        if r.get("companion") and "per_step" in r["companion"]:
            c = r["companion"]
            panels.append(_divergence_panel(c["dtype"], who, c["per_step"], c["summary"], c["verdict"]))
        out["divergence.png"] = divergence(sorted(panels, key=lambda p: p["dtype"], reverse=True))  # float64 on top
    if "confusion.png" in names:
        te = r["test"]
        out["confusion.png"] = confusion(te["y"], {f"{labels[role]}, {te[role]['weights']} weights": te[role]["pred"]
                                                   for role in who},
                                         r["class_names"], f"{r['data']['name']}: test split ({len(te['y']):,} rows), "
                                                             "true class vs predicted")
    return out
