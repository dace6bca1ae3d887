"""The report's text: built from results.json's dict alone (so every figure in the prose is in the data),
as a list of blocks rendered to markdown and to self-contained HTML (figures embedded as data: URLs)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np

from . import tolerances as tol
from .data import CLASS_NAMES

FIGURES = {"loss.png": "Training loss of both implementations, and their difference",
           "errors.png": "Per-layer forward and gradient errors (log scale)",
           "divergence.png": "Parameter divergence per step, float64 and float32 (log scale)",
           "confusion.png": "Confusion matrices on the test split"}

REPLAY = """# in the report's folder, with this project importable
import json
from manual import MLP, load_weights
from compare.data import iris_split
r = json.load(open("results.json")); c = r["config"]
net = MLP.from_weights(load_weights("init.safetensors"), c["activation"], c["output"], c["loss"])
d = iris_split(c["dtype"], c["standardize"])
for rows in r["schedule"]:
    _, g = net.gradients(d.X_train[rows], d.y_train[rows])
    for name, p in zip(net.names, net.params):
        p -= c["lr"] * g[name]
# net.weights() == load_weights("final-manual.safetensors"), bit for bit"""


def _e(x) -> str:
    """Numbers as 1.23e-16; None as a dash; JSON's "inf"/"nan" strings as they are."""
    return "—" if x is None else (f"{x:.2e}" if isinstance(x, float) else str(x))


def _ok(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def _check_rows(sec: dict):
    return [[sec["name"], _e(c["layer"]), c["tensor"], "×".join(map(str, c["shape"])) or "scalar", _e(c["max_abs"]),
             _e(c["rel"]), _e(c["torch_rel"]), _e(c["allowed"]), _ok(c["ok"])] for c in sec["checks"]]


def _failure_text(c: dict | None) -> str:
    if c is None:
        return ""
    where = f"layer {c['layer']}, " if c["layer"] is not None else ""
    val = f"{c['index']}: manual {c['manual']!r} vs torch {c['torch']!r}" if c["index"] else ""
    return f"{where}{c['tensor']}{val} (relative {_e(c['rel'])}, allowed {_e(c['allowed'])})"


def _pct(acc: list) -> str:
    return f"{acc[-1]:.1%}" if acc else "—"


def blocks(r: dict) -> list:
    c, t = r["config"], r["trajectory_summary"]
    verdict = "AGREE" if r["agree"] else "DISAGREE"
    B = [("h", 1, f"Hand-written back-propagation vs torch on iris: {verdict}"),
         ("p", "**Verdict:** " + ("every compared quantity is within its tolerance: " + ", ".join(r["parts"])
                                  if r["agree"] else "disagreement in " + ", ".join(k for k, v in r["parts"].items()
                                                                                   if not v)) + ".")]
    opt = f"{c['optimizer']}, lr {c['lr']:g}" + (f", momentum {c['momentum']:g}" if c["optimizer"] in
                                                  ("momentum", "nesterov") else "")
    opt += (f", betas {c['betas']}, eps {c['eps']:g}" if c["optimizer"] == "adam" else "")
    opt += f", weight decay {c['weight_decay']:g}" if c["weight_decay"] else ""
    B += [("h", 2, "Configuration"), ("table", ["option", "value"], [
        ["layers", "-".join(map(str, [4, *c["hidden"], 3])) + " (`W^l` shaped `(n_l, n_(l-1))`, as "
                                                             "`torch.nn.Linear.weight`)"],
        ["hidden activation / output / loss", f"{c['activation']} / {c['output']} / {c['loss']} (mean over the batch)"],
        ["optimizer", opt],
        ["batches", "full batch (120 rows per step: gradient descent)" if c["batch_size"] is None
         else f"{c['batch_size']} rows per step, reshuffled every epoch (seeded)"],
        ["epochs / steps", f"{c['epochs']}" + (f" (stopped early after {t['epochs_run']['manual']})"
                                                if t["stopped_early"]["manual"] else "") + f" / {t['steps']}"],
        ["early stopping", "off" if c["patience"] is None else f"patience {c['patience']} on the test-split error rate"],
        ["dropout", f"{c['dropout']:g}"], ["dtype", c["dtype"]],
        ["initial weights", c["weights_file"] or f"{c['init']} scheme, seed {c['seed']}"],
        ["inputs", "standardised (training-split statistics)" if c["standardize"] else "raw iris features, as the slides"],
        ["data", "iris: train = first 40 flowers of each species (120), test = last 10 of each (30)"],
        ["device (torch side)", c["device"]]])]
    conv = ["The loss is the **mean** over the batch, as torch's default reduction, so `δ^l` carries 1/n.",
            "An error is normwise relative, `max|manual − torch| / max|torch|` per tensor; NaN or Inf is a failure.",
            f"float64: {tol.FLOAT64_RTOL:g} relative, for one pass and for every training step.",
            "The noise floor of a trajectory is measured by a noise run: torch itself, restarted 1 ulp away (float64) "
            "with one rounding-error bound added to each gradient before every step. In float64 it is compared "
            "with torch; in float32 with a float64 reference run of the same problem.",
            "float32 is judged against that float64 reference: manual's float32 error may be at most "
            f"{tol.FLOAT32_ORDER:g}× torch's own (the noise floor, taken as at least {tol.FLOAT32_MIN_FLOOR:.1e})."]
    conv.append(f"Where the noise run shows rounding amplified {tol.NOISE_HORIZON:g}-fold (chaotic dynamics), the "
                "later steps are reported but not judged: two correct implementations diverge there too.")
    if c["patience"] is not None:
        conv.append("Early stopping watches the **test split** (the lecture has no validation split), "
                    "so the test accuracy below is optimistic.")
    B += [("h", 2, "Conventions"), ("ul", conv)]

    B += [("h", 2, "Forward pass and gradients"),
          ("p", f"One forward and backward pass on the 120 training flowers from the shared initial weights, "
                f"{c['dtype']}. Finite differences are a third opinion on manual's gradients (float64 central "
                "differences; error relative to the largest gradient entry)."),
          ("img", "errors.png", FIGURES["errors.png"]),
          ("table", ["section", "layer", "tensor", "shape", "max abs", "relative", "noise floor", "allowed", "ok"],
           _check_rows(r["forward"]) + _check_rows(r["gradients"]) + _check_rows(r["finite_differences"]))]
    notes = [f"{k}: {n}" for k in ("forward", "gradients", "finite_differences") for n in r[k]["notes"]]
    if notes:
        B.append(("ul", notes))

    fail = t["first_failing_step"]
    B += [("h", 2, "Training trajectory"),
          ("p", f"Both implementations train from the same initial weights on the same schedule ({t['steps']} steps); "
                "after every step every parameter is compared."),
          ("ul", [f"largest parameter divergence: {_e(t['max_param_divergence'])} (step {t['at_step']}); "
                  f"largest noise floor: {_e(t['max_noise_floor'])}",
                  f"largest loss difference: {_e(t['max_loss_abs_diff'])} "
                  f"({t['equal_loss_steps']} of {t['steps']} losses bit-identical)",
                  "first failing step: " + ("none" if fail is None else f"**{fail}** — "
                                            + _failure_text(r["trajectory"]["first_failure"]))
                  + ("" if t.get("horizon") is None else f"; steps from {t['horizon']} on are reported, not judged "
                     "(rounding amplified: see the notes)"),
                  f"epochs run: manual {t['epochs_run']['manual']}, torch {t['epochs_run']['torch']}"
                  + ("" if c["patience"] is None else f"; best epoch manual {t['best_epoch']['manual']}, "
                     f"torch {t['best_epoch']['torch']} (restored)")]),
          ("img", "loss.png", FIGURES["loss.png"]),
          ("table", ["tensor", "worst step", "max abs", "relative", "noise floor", "allowed", "ok"],
           [[k["tensor"], _e(k["step"]), _e(k["max_abs"]), _e(k["rel"]), _e(k["torch_rel"]), _e(k["allowed"]),
             _ok(k["ok"])] for k in r["trajectory"]["checks"]])]
    if r["trajectory"]["notes"]:
        B.append(("ul", r["trajectory"]["notes"]))
    B.append(("img", "divergence.png", FIGURES["divergence.png"]))
    if r["companion"] is not None and "error" in r["companion"]:
        B.append(("p", f"Companion run in {r['companion']['dtype']}: not compared, {r['companion']['error']}."))
    elif r["companion"] is not None:
        k = r["companion"]
        s = k["summary"]
        B.append(("p", f"Companion run in {k['dtype']} (same options and seed): "
                       f"{'agrees' if k['agree'] else '**disagrees**'}; largest divergence "
                       f"{_e(s['max_param_divergence'])}, largest noise floor {_e(s['max_noise_floor'])}"
                       + ("" if s["first_failing_step"] is None else f", first failing step **{s['first_failing_step']}**"
                          f" — {_failure_text(k['trajectory']['first_failure'])}") + "."))
        if k["trajectory"]["notes"]:
            B.append(("ul", [f"{k['dtype']}: {n}" for n in k["trajectory"]["notes"]]))

    te = r["test"]
    B += [("h", 2, "Test accuracy and predictions"),
          ("p", f"Test split (30 flowers): manual {te['manual']['correct']}/30, torch {te['torch']['correct']}/30 "
                f"(weights: manual {te['manual']['weights']}, torch {te['torch']['weights']}). "
                f"Training split after the last epoch: manual {_pct(t['train_accuracy']['manual'])}, "
                f"torch {_pct(t['train_accuracy']['torch'])}."),
          ("img", "confusion.png", FIGURES["confusion.png"]),
          ("table", ["#", "iris row", "true", "manual", "manual a^L", "torch", "torch a^L", "same"],
           [[i, row, CLASS_NAMES[y], CLASS_NAMES[pm], f"{te['manual']['output'][i][pm]:.6f}", CLASS_NAMES[pt],
             f"{te['torch']['output'][i][pt]:.6f}", _ok(pm == pt)]
            for i, (row, y, pm, pt) in enumerate(zip(te["rows"], te["y"], te["manual"]["pred"], te["torch"]["pred"]))])]
    if r["slide"] is not None:
        B += _slide_blocks(r["slide"])

    B += [("h", 2, "Files"), ("table", ["file", "what", "sha256 (first 16 hex digits)"],
                              [[f"`{k}`", v["what"], v["sha256"][:16]] for k, v in r["files"].items()])]
    rp = r["replay"]
    sched = ("`schedule` in results.json lists the training-split rows of every step, as indices into the "
             "training split in its canonical order (the first 40 flowers of each species, in `load_iris()` order).")
    if rp is None:
        B.append(("p", sched + f" This run uses {c['optimizer']}" + (" with weight decay" if c["weight_decay"] else "")
                  + (" and dropout" if c["dropout"] else "") + ": a replay needs that optimiser's state"
                  + (" and the dropout masks" if c["dropout"] else "") + ", so it is not replayed here."))
    else:
        B += [("p", sched + f" Replayed here with plain SGD from init.safetensors ({rp['steps']} steps): "
                    + ("final-manual.safetensors **bit for bit**" if rp["manual_bit_identical"] else
                       f"final-manual.safetensors **NOT** bit for bit (max abs {_e(rp['manual_max_abs'])})")
                    + f"; final-torch.safetensors to {_e(rp['torch_rel'])} relative (allowed "
                    f"{_e(rp['torch_allowed'])}: {_ok(rp['torch_ok'])}). The replay:"),
              ("pre", REPLAY, "python")]
    B += [("h", 2, "Environment"), ("table", ["", "version / value"], [[k, v] for k, v in r["environment"].items()])]
    return B


def _slide_blocks(s: dict) -> list:
    rows = []
    for i, (x, y) in enumerate(zip(s["flowers"], s["labels"])):
        for j in range(3):
            star = " \\*" if [i, j] in s["misprints"] else ""
            rows.append([i + 1 if j == 0 else "", str(x) if j == 0 else "", CLASS_NAMES[y] if j == 0 else "",
                         CLASS_NAMES[j], f"{s['printed'][i][j]:.8e}{star}", f"{s['manual'][i][j]:.8e}",
                         f"{s['torch'][i][j]:.8e}", f"{s['rel_to_printed'][i][j]:.1e}"])
    mis = "; ".join(f"[{i},{j}] printed {s['printed'][i][j]:.8e}, recomputed {s['manual'][i][j]:.9f}"
                    for i, j in s["misprints"])
    return [("h", 2, "The slide's six flowers"),
            ("p", f"The slide's printed weights (transposed into this layout) on its six flowers, in float64. manual vs "
                  f"torch: relative {_e(s['manual_vs_torch_rel'])} (allowed {_e(s['allowed'])}): "
                  f"{'agree' if s['agree'] else '**DISAGREE**'}. Both match the printed probabilities to about "
                  f"{s['significant_digits']} significant digits (largest relative difference "
                  f"{_e(s['max_rel_to_printed_excluding_misprints'])}, the known misprint excepted), consistent with "
                  f"the slide's float32 computation and print (float32 eps = {np.finfo(np.float32).eps:.1e}). "
                  f"Predicted classes: {', '.join(CLASS_NAMES[k] for k in s['predicted'])}."),
            ("table", ["flower", "features", "true", "class", "slide (printed)", "manual", "torch", "rel. to slide"],
             rows),
            ("p", f"\\* a known misprint on the slide (it dropped a digit): {mis}.")]


# ---- rendering -------------------------------------------------------------------------------
def render_md(blocks) -> str:
    out = []
    for kind, *a in blocks:
        if kind == "h":
            out.append("#" * a[0] + " " + a[1])
        elif kind == "p":
            out.append(a[0])
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in a[0]))
        elif kind == "pre":
            out.append(f"```{a[1]}\n{a[0]}\n```")
        elif kind == "img":
            out.append(f"![{a[1]}]({a[0]})")
        elif kind == "table":
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            out.append("\n".join(["| " + " | ".join(map(cell, a[0])) + " |", "|" + " --- |" * len(a[0])]
                                 + ["| " + " | ".join(map(cell, row)) + " |" for row in a[1]]))
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;"
       "padding:.25em .6em;text-align:left}th{background:#f3f3f3}code,pre{background:#f6f6f6;font-size:.9em}"
       "pre{padding:.8em;overflow-x:auto}img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}"
       "figcaption{color:#555;font-size:.9em}.agree{color:#176f2c}.disagree{color:#b00020}")


def _inline(text: str) -> str:
    t = html.escape(str(text), quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t).replace("\\*", "*")


def render_html(blocks, out: Path) -> str:
    """One self-contained page: the PNG figures in ``out`` are embedded as base64 data: URLs."""
    body = []
    for kind, *a in blocks:
        if kind == "h":
            cls = "" if a[0] != 1 else f' class="{"agree" if a[1].endswith(": AGREE") else "disagree"}"'
            body.append(f"<h{a[0]}{cls}>{_inline(a[1])}</h{a[0]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(a[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in a[0]) + "</ul>")
        elif kind == "pre":
            body.append(f"<pre><code>{html.escape(a[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode((out / a[0]).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(a[1])}">'
                        f"<figcaption>{html.escape(a[1])}</figcaption></figure>")
        elif kind == "table":
            body.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in a[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(x)}</td>" for x in row) + "</tr>" for row in a[1])
                        + "</table>")
    title = html.escape(blocks[0][2])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def terminal_summary(r: dict, out: Path, seconds: float) -> str:
    t, te = r["trajectory_summary"], r["test"]

    def worst(k):
        return max((x["rel"] for x in r[k]["checks"] if isinstance(x["rel"], float)), default=0.0)

    lines = [f"{'AGREE' if r['agree'] else 'DISAGREE'}: manual and torch on iris, {t['steps']} steps "
             f"({r['config']['dtype']}, {r['config']['optimizer']}, lr {r['config']['lr']:g})",
             f"  forward {worst('forward'):.1e}, gradients {worst('gradients'):.1e}, finite differences "
             f"{worst('finite_differences'):.1e}; trajectory max divergence {t['max_param_divergence']:.1e} "
             f"(noise floor {t['max_noise_floor']:.1e})"
             + ("" if t["first_failing_step"] is None else f", FIRST FAILING STEP {t['first_failing_step']}")]
    if r["companion"] is not None and "error" in r["companion"]:
        lines.append(f"  {r['companion']['dtype']} companion: not compared, {r['companion']['error']}")
    elif r["companion"] is not None:
        k = r["companion"]
        lines.append(f"  {k['dtype']} companion: {'agrees' if k['agree'] else 'DISAGREES'}, max divergence "
                     f"{k['summary']['max_param_divergence']:.1e} (noise floor {k['summary']['max_noise_floor']:.1e})")
    lines.append(f"  test accuracy: manual {te['manual']['correct']}/30, torch {te['torch']['correct']}/30"
                 + ("" if r["slide"] is None else f"; slide's six flowers: manual vs torch "
                    f"{r['slide']['manual_vs_torch_rel']:.1e}, about {r['slide']['significant_digits']} digits "
                    "of the slide's print"))
    if not r["agree"]:
        lines.append("  disagreeing: " + ", ".join(k for k, v in r["parts"].items() if not v))
    lines.append(f"  written to {out}/ (report.html, report.md, results.json, figures, weights) in {seconds:.1f} s")
    return "\n".join(lines)
