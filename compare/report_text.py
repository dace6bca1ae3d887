"""The report's text: built from results.json's dict alone (so every figure in the prose is in the data),
as a list of blocks (rendered by report_render.py to markdown and to self-contained HTML).  Text names
the implementations with their roles ("torch (candidate)"); the data it reads is keyed by role."""
from __future__ import annotations

import numpy as np

from . import tolerances as tol
from .report_data import has_slide

FIGURES = {"loss.png": "Training loss of both implementations, and their difference",
           "errors.png": "Per-layer forward and gradient errors of the candidate (log scale)",
           "divergence.png": "Divergence per step against each side's noise level and the allowance; steps not "
                             "judged shaded (float64 and float32, log scale)",
           "confusion.png": "Confusion matrices on the test split"}

REPLAY = """# in the report's folder, with this project importable
import json
from compare.data import load_split
from compare.registry import load
from compare.spec import Spec
from manual.weights import load_weights
r = json.load(open("results.json")); c = r["config"]
spec = Spec(**{**c, "hidden": tuple(c["hidden"]), "betas": tuple(c["betas"])})
impl = load(r["environment"]["loaded_as"]["candidate"] or r["candidate"])   # the candidate, through the protocol
d = load_split(spec)          # the same data, split and standardised as the run
w = load_weights("init.safetensors")
for rows in r["schedule"]:
    g = impl.forward_backward(spec, w, d.X_train[rows], d.y_train[rows], None).grads
    w = {k: v - v.dtype.type(c["lr"]) * g[k] for k, v in w.items()}
# w against load_weights("final-candidate.safetensors") and ("final-reference.safetensors")"""


def sci(x) -> str:
    """Numbers as 1.23e-16; None as a dash; JSON's "inf"/"nan" strings as they are."""
    return "—" if x is None else (f"{x:.2e}" if isinstance(x, float) else str(x))


def _ok(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def _v(verdict: str) -> str:
    return verdict if verdict in ("agree", "not available") else f"**{verdict}**"


def _check_rows(sec: dict):
    return [[sec["name"], c["side"] or "", sci(c["layer"]), c["tensor"], "×".join(map(str, c["shape"])) or "scalar",
             sci(c["max_abs"]), sci(c["rel"]), sci(c["noise"]), sci(c["allowed"]), _ok(c["ok"])] for c in sec["checks"]]


def _failure_text(c: dict | None, who: dict) -> str:
    if c is None:
        return ""
    where = f"layer {c['layer']}, " if c["layer"] is not None else ""
    if c["side"]:
        val = (f"{c['index']}: {who[c['side']]}'s back-propagation {c['candidate']!r} vs finite difference "
               f"{c['reference']!r}" if c["index"] else "")
    else:
        val = (f"{c['index']}: {who['candidate']} {c['candidate']!r} vs {who['reference']} {c['reference']!r}"
               if c["index"] else "")
    return f"{where}{c['tensor']}{val} (relative {sci(c['rel'])}, allowed {sci(c['allowed'])})"


def _pct(acc: list) -> str:
    return f"{acc[-1]:.1%}" if acc else "—"


TEST_ROWS_WHOLE, TEST_ROWS_SHOWN = 40, 30  # a test split of up to 40 rows is tabled whole, a larger one's
                                           # first 30 rows only (results.json holds every row)


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def _per_class(train: list, test: list) -> str:
    """"40 train / 10 test per class" when every class has as many; "per class: 38–56 train, 10–15 test"."""
    def span(v):
        return f"{min(v)}" if min(v) == max(v) else f"{min(v)}–{max(v)}"
    if min(train) == max(train) and min(test) == max(test):
        return f"{train[0]} train / {test[0]} test per class"
    return f"per class: {span(train)} train, {span(test)} test"


def split_text(d: dict) -> str:
    """How the data was split, with the sizes: the rule for a data set, the file's own split for --data."""
    sizes = (f"{_rows(d['n_train'])} train, {_rows(d['n_test'])} test "
             f"({_per_class(d['train_per_class'], d['test_per_class'])})")
    if d["source"] == "file":
        return f"{d['name']}: the file's own split, X_train / X_test as given: {sizes}"
    return (f"{d['name']}: the first 80 % of each class's rows in the data set's order, rounded down, train; the "
            f"rest test: {sizes}")


def title(r: dict) -> str:
    return (f"{r['candidate']} (candidate) vs {r['reference']} (reference) on {r['data']['name']}: "
            f"{r['verdict'].upper()}, "
            f"judged {r['judged_steps']} of {r['steps']} steps")


def _verdict_text(r: dict) -> str:
    parts = r["parts"]
    if r["verdict"] == "agree":
        text = "every compared quantity is within its tolerance: " + ", ".join(
            f"{k} ({v})" if v != "agree" else k for k, v in parts.items())
    elif r["verdict"] == "disagree":
        text = "disagreement in " + ", ".join(k for k, v in parts.items() if v == "disagree")
    else:
        text = ("**inconclusive**: no part disagrees, but too little could be judged to call it agreement "
                "(parts: " + ", ".join(f"{k} {v}" for k, v in parts.items()) + ")")
    return f"**Verdict:** {text}." + (f" **Why:** {r['reason']}." if r["reason"] else "")


def blocks(r: dict) -> list:
    c, t, d = r["config"], r["trajectory_summary"], r["data"]
    names = d["class_names"]
    who = {role: r[role] for role in ("candidate", "reference")}
    lab = {role: f"{who[role]} ({role})" for role in who}
    B = [("h", 1, title(r)), ("p", _verdict_text(r))]
    opt = f"{c['optimizer']}, lr {c['lr']:g}" + (f", momentum {c['momentum']:g}" if c["optimizer"] in
                                                  ("momentum", "nesterov") else "")
    opt += (f", betas {c['betas']}, eps {c['eps']:g}" if c["optimizer"] == "adam" else "")
    opt += f", weight decay {c['weight_decay']:g}" if c["weight_decay"] else ""
    B += [("h", 2, "Configuration"), ("table", ["option", "value"], [
        ["candidate / reference", f"{who['candidate']} / {who['reference']}"],
        ["layers", "-".join(map(str, [d["n_features"], *c["hidden"], d["n_classes"]]))
         + " (`W^l` shaped `(n_l, n_(l-1))`, as `torch.nn.Linear.weight`)"],
        ["hidden activation / output / loss", f"{c['activation']} / {c['output']} / {c['loss']} (mean over the batch)"],
        ["optimizer", opt],
        ["batches", f"full batch ({_rows(d['n_train'])} per step: gradient descent)" if c["batch_size"] is None
         else f"{c['batch_size']} rows per step, reshuffled every epoch (seeded)"],
        ["epochs / steps", f"{c['epochs']}" + (f" (stopped early after {t['epochs_run']['candidate']})"
                                                if t["stopped_early"]["candidate"] else "") + f" / {t['steps']}"],
        ["early stopping", "off" if c["patience"] is None
         else f"patience {c['patience']} on the test-split error rate"],
        ["dropout", f"{c['dropout']:g}"], ["dtype", c["dtype"]],
        ["initial weights", c["weights_file"] or f"{c['init']} scheme, seed {c['seed']}"],
        ["inputs", "standardised (training-split statistics)" if c["standardize"]
         else f"raw {d['name']} features" + (", as the slides" if has_slide(c) else "")],
        ["data", split_text(d)],
        ["classes", f"{d['n_classes']}: " + ", ".join(names)]])]
    conv = ["The loss is the **mean** over the batch, as torch's default reduction, so `δ^l` carries 1/n.",
            "An error is normwise relative, `max|candidate − reference| / max|reference|` per tensor; NaN or Inf is "
            "a failure.",
            f"float64 single passes: {tol.FLOAT64_RTOL:g} relative. float32: both sides also run in float64; the "
            f"candidate's float32 result is judged against the reference's float64 one, allowed "
            f"{tol.FLOAT32_ORDER:g}× the noise floor (the tighter side's own float32 error).",
            "A trajectory is judged step by step against a measured noise envelope: each side also trains a noise run, "
            "started 1 ulp away with rounding-sized noise added to its gradients before every step. The allowance "
            f"at a step is {tol.ENVELOPE_FACTOR:g}× the tighter side's noise level (looking "
            f"{tol.ENVELOPE_LEAD} steps ahead) plus {sci(tol.TRAJECTORY_RTOL[c['dtype']])}.",
            f"Where that envelope passes {tol.ENVELOPE_LIMIT:g} (rounding amplified by the dynamics) a step is shown "
            "but **not judged**: two correct implementations drift apart there too. A check that judges fewer than "
            f"{tol.MIN_JUDGED_FRACTION:.0%} of its steps is **inconclusive**."]
    if c["patience"] is not None:
        conv.append("Early stopping watches the **test split** (the lecture has no validation split), "
                    "so the test accuracy below is optimistic.")
    B += [("h", 2, "Conventions"), ("ul", conv)]

    B += [("h", 2, "Forward pass and gradients"),
          ("p", f"One forward and backward pass on the {_rows(d['n_train'])} of the training split from the shared "
                f"initial weights, "
                f"{c['dtype']}: forward {_v(r['forward']['verdict'])}, gradients {_v(r['gradients']['verdict'])}. "
                "Finite differences are a third opinion on each side's gradients (column `side`), against central "
                f"differences of its own loss: {_v(r['finite_differences']['verdict'])}."),
          ("img", "errors.png", FIGURES["errors.png"]),
          ("table", ["section", "side", "layer", "tensor", "shape", "max abs", "relative", "noise floor", "allowed",
                     "ok"],
           _check_rows(r["forward"]) + _check_rows(r["gradients"]) + _check_rows(r["finite_differences"]))]
    notes = [f"{k}: {n}" for k in ("forward", "gradients", "finite_differences") for n in r[k]["notes"]]
    for k in ("forward", "gradients", "finite_differences"):
        if r[k]["first_failure"] is not None:
            notes.append(f"{k}: first disagreement: " + _failure_text(r[k]["first_failure"], who))
    if notes:
        B.append(("ul", notes))
    B += _trajectory_blocks(r, c, t, who, lab)
    B += _test_blocks(r, t, d, who, lab)
    if r["slide"] is not None:
        B += _slide_blocks(r["slide"], who, names)
    elif not has_slide(c):
        B += [("h", 2, "The slide's six flowers"),
              ("p", f"Left out: the slide's printed weights are the lecture's 4-6-3 network on iris's six flowers, "
                    f"not a network for {d['name']}.")]
    B += [("h", 2, "Files"), ("table", ["file", "what", "sha256 (first 16 hex digits)"],
                              [[f"`{k}`", v["what"], v["sha256"][:16]] for k, v in r["files"].items()])]
    B += _replay_blocks(r, r["replay"], c)
    env = [[k, v] for k, v in r["environment"].items() if not isinstance(v, dict)]
    env += [[f"{role}: {k}", v] for role in ("candidate", "reference") for k, v in r["environment"][role].items()]
    B += [("h", 2, "Environment"), ("table", ["", "version / value"], env)]
    return B


def _test_blocks(r, t, d, who, lab) -> list:
    te, names, n = r["test"], d["class_names"], d["n_test"]
    same = sum(pc == pr for pc, pr in zip(te["candidate"]["pred"], te["reference"]["pred"], strict=False))
    shown = n if n <= TEST_ROWS_WHOLE else TEST_ROWS_SHOWN
    B = [("h", 2, "Test accuracy and predictions"),
         ("p", f"Test split ({_rows(n)}): {lab['candidate']} {te['candidate']['correct']}/{n}, {lab['reference']} "
               f"{te['reference']['correct']}/{n} (weights: {te['candidate']['weights']}, "
               f"{te['reference']['weights']}); the two predict the same class on {same} of {n} rows. Training split "
               f"after the last epoch: {_pct(t['train_accuracy']['candidate'])} and "
               f"{_pct(t['train_accuracy']['reference'])}."),
         ("img", "confusion.png", FIGURES["confusion.png"]),
         ("table", ["#", f"{d['name']} row" if d["source"] == "dataset" else "X_test row", "true", who["candidate"],
                    f"{who['candidate']} a^L", who["reference"], f"{who['reference']} a^L", "same"],
          [[i, row, names[y], names[pc], f"{te['candidate']['output'][i][pc]:.6f}", names[pr],
            f"{te['reference']['output'][i][pr]:.6f}", _ok(pc == pr)]
           for i, (row, y, pc, pr) in enumerate(zip(te["rows"][:shown], te["y"], te["candidate"]["pred"],
                                                    te["reference"]["pred"], strict=False))])]
    if shown < n:
        differ = n - same - sum(pc != pr for pc, pr in zip(te["candidate"]["pred"][:shown],
                                                            te["reference"]["pred"][:shown], strict=False))
        B.append(("p", f"The first {shown} of {n:,} test rows; {n - shown:,} left out here"
                       + (f" ({differ} of them predicted differently by the two)" if differ else "")
                       + " — `test` in results.json holds every row (predictions and outputs of both)."))
    return B


def _trajectory_blocks(r, c, t, who, lab) -> list:
    tr, fail, skip = r["trajectory"], t["first_failing_step"], t["first_unjudged_step"]
    B = [("h", 2, "Training trajectory"),
         ("p", f"Both implementations train from the same initial weights on the same schedule ({t['steps']} steps, "
               "same order, same dropout masks); after every step every parameter is compared. "
               f"Verdict: {_v(tr['verdict'])}, judged {t['judged_steps']} of {t['steps']} steps."),
         ("ul", [f"largest divergence: {sci(t['max_divergence'])} (step {t['at_step']}); largest noise envelope on a "
                 f"judged step: {sci(t['max_envelope_judged'])}",
                 f"largest loss difference: {sci(t['max_loss_abs_diff'])} "
                 f"({t['equal_loss_steps']} of {t['steps']} losses bit-identical)",
                 "first failing step: " + ("none" if fail is None else f"**{fail}** — "
                                           + _failure_text(t["first_failure"], who))
                 + ("" if skip is None else f"; first step not judged: {skip} (see the notes)"),
                 f"epochs run: {lab['candidate']} {t['epochs_run']['candidate']}, {lab['reference']} "
                 f"{t['epochs_run']['reference']}" + ("" if c["patience"] is None else
                                                      f"; best epoch {t['best_epoch']['candidate']} and "
                                                      f"{t['best_epoch']['reference']} (restored)")]),
         ("img", "loss.png", FIGURES["loss.png"]),
         ("table", ["tensor", "worst step", "max abs", "relative", "noise envelope", "allowed", "ok"],
          [[k["tensor"], sci(k["step"]), sci(k["max_abs"]), sci(k["rel"]), sci(k["noise"]), sci(k["allowed"]),
            _ok(k["ok"])] for k in tr["checks"]])]
    if tr["notes"]:
        B.append(("ul", tr["notes"]))
    B.append(("img", "divergence.png", FIGURES["divergence.png"]))
    k = r["companion"]
    if k is not None and "error" in k:
        B.append(("p", f"Companion run in {k['dtype']}: not compared, {k['error']}."))
    elif k is not None:
        s = k["summary"]
        B.append(("p", f"Companion run in {k['dtype']} (same options and seed): {_v(k['verdict'])}, judged "
                       f"{s['judged_steps']} of {s['steps']} steps; largest divergence {sci(s['max_divergence'])}, "
                       f"largest judged noise envelope {sci(s['max_envelope_judged'])}"
                       + ("" if s["first_failing_step"] is None
                          else f", first failing step **{s['first_failing_step']}**"
                          f" — {_failure_text(s['first_failure'], who)}") + "."))
        if k["trajectory"]["notes"]:
            B.append(("ul", [f"{k['dtype']}: {n}" for n in k["trajectory"]["notes"]]))
    return B


def _replay_blocks(r, rp, c) -> list:
    d = r["data"]
    order = ("X_train's rows in the file's order" if d["source"] == "file" else
             f"the training rows of {d['name']} under the split rule, in the data set's order")
    sched = ("`schedule` in results.json lists the training-split rows of every step, as indices into the "
             f"training split in its canonical order ({order}).")
    if rp is None:
        return [("p", sched + f" This run uses {c['optimizer']}" + (" with weight decay" if c["weight_decay"] else "")
                 + (" and dropout" if c["dropout"] else "") + ": a replay needs that optimiser's state"
                 + (" and the dropout masks" if c["dropout"] else "") + ", so it is not replayed here.")]

    def one(role):
        x = rp[role]
        return (f"{x['file']} " + ("**bit for bit**" if x["bit_identical"] else
                                   f"to {sci(x['rel'])} relative (max abs {sci(x['max_abs'])}, not bit-identical)")
                + ("" if x["ok"] else " — **over the allowance**"))
    judged = (f"allowed {sci(rp['allowed'])}, the trajectory's allowance at its last step" if rp["judged"] else
              "the last step was not judged, so neither file is held to an allowance")
    return [("p", sched + f" Replayed here with plain SGD through the candidate's `forward_backward` from "
                  f"init.safetensors ({rp['steps']} steps): {one('candidate')}; {one('reference')} ({judged}): "
                  f"{_v(rp['verdict'])}. The replay:"),
            ("pre", REPLAY, "python")]


def _slide_blocks(s: dict, who: dict, names: list) -> list:
    rows = []
    for i, (x, y) in enumerate(zip(s["flowers"], s["labels"], strict=False)):
        for j in range(3):
            star = " \\*" if [i, j] in s["misprints"] else ""
            rows.append([i + 1 if j == 0 else "", str(x) if j == 0 else "", names[y] if j == 0 else "",
                         names[j], f"{s['printed'][i][j]:.8e}{star}", f"{s['candidate'][i][j]:.8e}",
                         f"{s['reference'][i][j]:.8e}", f"{s['rel_to_printed'][i][j]:.1e}"])
    mis = "; ".join(f"[{i},{j}] printed {s['printed'][i][j]:.8e}, recomputed {s['candidate'][i][j]:.9f}"
                    for i, j in s["misprints"])
    return [("h", 2, "The slide's six flowers"),
            ("p", f"The slide's printed weights (transposed into this layout) on its six flowers, in float64. "
                  f"{who['candidate']} (candidate) vs {who['reference']} (reference): relative {sci(s['rel'])} "
                  f"(allowed {sci(s['allowed'])}): {_v(s['verdict'])}. The candidate matches the printed probabilities "
                  f"to about {s['significant_digits']} significant digits (largest relative difference "
                  f"{sci(s['max_rel_to_printed_excluding_misprints'])}, the known misprint excepted), consistent with "
                  f"the slide's float32 computation and print (float32 eps = {np.finfo(np.float32).eps:.1e}). "
                  f"Predicted classes: {', '.join(names[k] for k in s['predicted'])}."),
            ("table", ["flower", "features", "true", "class", "slide (printed)", f"{who['candidate']} (candidate)",
                       f"{who['reference']} (reference)", "candidate rel. to slide"], rows),
            ("p", f"\\* a known misprint on the slide (it dropped a digit): {mis}.")]
