"""``python -m compare report --out DIR``: the comparison report, for a person and as data.

DIR receives report.md, a self-contained report.html (figures embedded), the figures as PNG,
results.json (everything in the report as data, including "agree" and "schedule"), and the weights
init.safetensors, final-manual.safetensors, final-torch.safetensors (restored-*.safetensors when
early stopping restored the best weights).  Every file is written atomically (temp file + rename),
figures and weights first, then results.json, report.md and report.html, so a report never points
at a half-written file.  results.json holds no timestamps or timings: one seed, one file.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import multiprocessing as mp
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import manual
from manual.weights import atomic_write_bytes
from . import figures
from . import harness as H
from . import tolerances as tol
from .data import CLASS_NAMES, SLIDE_FLOWERS, SLIDE_LABELS, SLIDE_MISPRINTS, SLIDE_PROBS, iris_split, slide_weights

FIGURES = {"loss.png": "Training loss of both implementations",
           "errors.png": "Per-layer forward and gradient errors",
           "divergence.png": "Parameter divergence per step",
           "confusion.png": "Confusion matrices on the test split"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path: Path, data: bytes) -> None:
    """Atomically (temp file + rename), readable as any file the user creates (mkstemp makes 0600)."""
    atomic_write_bytes(path, data)
    os.chmod(path, 0o666 & ~_umask())


def prepare_out_dir(path) -> Path:
    """The output folder, created if missing; an existing path that is not a folder is refused."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory; give a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---- the computations beyond run_check -------------------------------------------------------
def _canonical(weights: dict) -> dict:
    return {k: weights[k] for k in sorted(weights, key=lambda k: (int(k[1:]), k[0] != "W"))}


def allowance_per_step(traj: H.Trajectory, dtype: str) -> np.ndarray:
    """The trajectory check's limit at every step, rebuilt exactly as harness.trajectory_section sets it:
    ORDER x the noise run's largest divergence so far (parameters and loss), at least FLOAT64_RTOL (float64)."""
    n, f32 = traj.steps, dtype == "float32"
    offs = H._offsets(_canonical(traj.manual.final))
    rel = H._per_step_rel(traj.noise.params[:n + 1], traj.base.params[:n + 1], offs, traj.noise.loss[:n],
                          traj.base.loss[:n], dtype)
    floor = np.maximum.accumulate(np.max(np.stack(list(rel.values())), axis=0))
    order, min_floor = (tol.FLOAT32_ORDER, tol.FLOAT32_MIN_FLOOR) if f32 else (tol.FLOAT64_ORDER, 0.0)
    return np.maximum(order * np.maximum(floor, min_floor), 0.0 if f32 else tol.FLOAT64_RTOL)


def _torch_probs(weights, spec: H.Spec, X) -> np.ndarray:
    import torch
    import torch_ref

    dev = H.torch_device(spec)
    model = torch_ref.from_shared(weights, spec.activation, spec.output, spec.dropout, dev).eval()
    with torch.no_grad():
        return model.output(model(torch.as_tensor(X, device=dev))).cpu().numpy()


def test_predictions(spec: H.Spec, traj: H.Trajectory, data) -> dict:
    """Both implementations' outputs on the test split, with the weights each trainer returns."""
    out = {"rows": data.test_rows.tolist(), "y": data.y_test.tolist()}
    for name, run in (("manual", traj.manual), ("torch", traj.torch)):
        w = run.restored if run.restored is not None else run.final
        if name == "manual":
            a = manual.MLP.from_weights(w, spec.activation, spec.output, spec.loss).forward(data.X_test)
        else:
            a = _torch_probs(w, spec, data.X_test)
        pred = a.argmax(axis=1)
        out[name] = {"weights": "restored" if run.restored is not None else "final", "pred": pred.tolist(),
                     "output": a.tolist(), "correct": int(np.sum(pred == data.y_test)), "n": len(pred)}
    return out


def slide_flowers(spec: H.Spec) -> dict:
    """The slide's printed weights on its six flowers: manual, torch and the printed probabilities."""
    w = slide_weights("float64")
    s = replace(spec, activation="sigmoid", output="softmax", loss="cross_entropy", hidden=(6,), dropout=0.0,
                dtype="float64", weights_file=None)
    pm = manual.MLP.from_weights(w, "sigmoid", "softmax", "cross_entropy").forward(SLIDE_FLOWERS.astype(np.float64))
    pt = _torch_probs(w, s, SLIDE_FLOWERS.astype(np.float64))
    _, rel_mt = tol.rel_error(pm, pt)
    rel_slide = np.abs(pm - SLIDE_PROBS) / np.abs(SLIDE_PROBS)
    ok = np.ones_like(rel_slide, dtype=bool)
    for i, j in SLIDE_MISPRINTS:
        ok[i, j] = False
    worst = float(rel_slide[ok].max())
    return {"flowers": SLIDE_FLOWERS.tolist(), "labels": SLIDE_LABELS.tolist(), "printed": SLIDE_PROBS.tolist(),
            "manual": pm.tolist(), "torch": pt.tolist(), "manual_vs_torch_rel": rel_mt,
            "allowed": tol.FLOAT64_RTOL, "agree": bool(rel_mt <= tol.FLOAT64_RTOL),
            "rel_to_printed": rel_slide.tolist(), "misprints": [list(m) for m in SLIDE_MISPRINTS],
            "max_rel_to_printed_excluding_misprints": worst,
            "significant_digits": int(round(-math.log10(worst))) if worst > 0 else 16,
            "predicted": pm.argmax(axis=1).tolist()}


def replay(spec: H.Spec, out: Path, schedule, data, allowed_torch: float) -> dict | None:
    """Replay ``schedule`` with plain SGD (p -= lr * dC/dp, manual's BP) from the written init.safetensors and
    compare with the written final weights.  Only for plain SGD without weight decay or dropout."""
    if spec.optimizer != "sgd" or spec.weight_decay or spec.dropout:
        return None
    net = manual.MLP.from_weights(manual.load_weights(out / "init.safetensors"), spec.activation, spec.output,
                                  spec.loss)
    for rows in schedule:
        _, g = net.gradients(data.X_train[rows], data.y_train[rows])
        for name, p in zip(net.names, net.params):
            p -= spec.lr * g[name]
    w = net.weights()
    fm, ft = (manual.load_weights(out / f"final-{k}.safetensors") for k in ("manual", "torch"))
    rel_t = max(tol.rel_error(w[k], ft[k])[1] for k in w)
    return {"steps": len(schedule), "manual_bit_identical": all(np.array_equal(w[k], fm[k]) for k in w),
            "manual_max_abs": max(float(np.max(np.abs(w[k] - fm[k]))) for k in w), "torch_rel": rel_t,
            "torch_allowed": allowed_torch, "torch_ok": bool(rel_t <= allowed_torch)}


def _per_step(traj: H.Trajectory, dtype: str) -> dict:
    return {"loss_manual": traj.manual.loss, "loss_torch": traj.torch.loss,
            "param_divergence": traj.param_rel_per_step, "noise_floor": traj.floor_per_step,
            "allowance": allowance_per_step(traj, dtype)}


def _summary(traj: H.Trajectory, sec: H.Section) -> dict:
    d, n = traj.param_rel_per_step, traj.steps
    ldiff = np.abs(traj.manual.loss[:n] - traj.torch.loss[:n])
    m, t = traj.manual, traj.torch
    return {"steps": n, "max_param_divergence": float(np.max(d)), "at_step": int(np.argmax(d)),
            "max_noise_floor": float(np.max(traj.floor_per_step)),
            "max_loss_abs_diff": float(np.max(ldiff)) if n else 0.0,
            "equal_loss_steps": int(np.sum(ldiff == 0)),
            "first_failing_step": None if sec.first_failure is None else sec.first_failure.step,
            "first_failure": None if sec.first_failure is None else asdict(sec.first_failure),
            "epochs_run": {"manual": m.epochs_run, "torch": t.epochs_run},
            "stopped_early": {"manual": m.stopped_early, "torch": t.stopped_early},
            "best_epoch": {"manual": m.best_epoch, "torch": t.best_epoch},
            "restored_best": {"manual": m.restored is not None, "torch": t.restored is not None},
            "train_accuracy": {"manual": m.train_accuracy, "torch": t.train_accuracy},
            "test_accuracy": {"manual": m.val_accuracy, "torch": t.val_accuracy}}


# ---- markdown and HTML from one list of blocks -----------------------------------------------
def _inline_html(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t).replace("\\*", "*")
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


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
            head, rows = a
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            out.append("\n".join(["| " + " | ".join(map(cell, head)) + " |", "|" + " --- |" * len(head)]
                                 + ["| " + " | ".join(map(cell, r)) + " |" for r in rows]))
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;"
       "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;"
       "padding:.25em .6em;text-align:left}th{background:#f3f3f3}code,pre{background:#f6f6f6;font-size:.9em}"
       "pre{padding:.8em;overflow-x:auto}img{max-width:100%;border:1px solid #eee}"
       ".agree{color:#176f2c}.disagree{color:#b00020}")


def render_html(blocks, out: Path, title: str) -> str:
    body = []
    for kind, *a in blocks:
        if kind == "h":
            cls = "" if a[0] != 1 else f' class="{"agree" if "AGREE" in a[1] and "DIS" not in a[1] else "disagree"}"'
            body.append(f"<h{a[0]}{cls}>{_inline_html(a[1])}</h{a[0]}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(a[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in a[0]) + "</ul>")
        elif kind == "pre":
            body.append(f"<pre><code>{html.escape(a[0])}</code></pre>")
        elif kind == "img":
            data = base64.b64encode((out / a[0]).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(a[1])}">'
                        f"<figcaption>{html.escape(a[1])}</figcaption></figure>")
        elif kind == "table":
            head, rows = a
            body.append("<table><tr>" + "".join(f"<th>{_inline_html(str(h))}</th>" for h in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>"
                                  for r in rows) + "</table>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _e(x) -> str:
    return "—" if x is None else (f"{x:.2e}" if isinstance(x, float) else str(x))


def _check_rows(sec: H.Section):
    return [[sec.name, _e(c.layer), c.tensor, "×".join(map(str, c.shape)) or "scalar", _e(c.max_abs), _e(c.rel),
             _e(c.torch_rel), _e(c.allowed), "yes" if c.ok else "**NO**"] for c in sec.checks]


def blocks(r: dict, res: H.CheckResult, spec: H.Spec, files: dict) -> list:
    cfg, f32 = r["config"], spec.dtype == "float32"
    verdict = "AGREE" if r["agree"] else "DISAGREE"
    bad = [k for k, v in r["parts"].items() if not v]
    B = [("h", 1, f"Hand-written back-propagation vs torch on iris: {verdict}")]
    B.append(("p", "**Verdict:** " + ("every compared quantity is within its tolerance: " + ", ".join(r["parts"])
                                      if r["agree"] else "disagreement in " + ", ".join(bad)) + "."))
    hid = "-".join(map(str, spec.sizes))
    batch = (f"full batch ({120} rows per step: gradient descent)" if spec.batch_size is None
             else f"{spec.batch_size} rows per step, reshuffled every epoch (seeded)")
    B += [("h", 2, "Configuration"), ("table", ["option", "value"], [
        ["layers", f"{hid} (`W^l` shaped `(n_l, n_(l-1))`, as `torch.nn.Linear.weight`)"],
        ["hidden activation / output / loss", f"{spec.activation} / {spec.output} / {spec.loss} (mean over the batch)"],
        ["optimizer", f"{spec.optimizer}, lr {spec.lr:g}" + (f", momentum {spec.momentum:g}"
                                                            if spec.optimizer in ("momentum", "nesterov") else "")
         + (f", weight decay {spec.weight_decay:g}" if spec.weight_decay else "")],
        ["batches", batch], ["epochs / steps", f"{spec.epochs} / {res.steps}"],
        ["early stopping", "off" if spec.patience is None else f"patience {spec.patience} on the test-split error rate"],
        ["dropout", f"{spec.dropout:g}"], ["dtype", spec.dtype],
        ["initial weights", spec.weights_file or f"{spec.init} scheme, seed {spec.seed}"],
        ["inputs", "standardised (training-split statistics)" if spec.standardize else "raw iris features, as the slides"],
        ["data", "iris: train = first 40 flowers of each species (120), test = last 10 of each (30)"],
        ["device (torch side)", spec.device]])]
    conv = ["The loss is the **mean** over the batch, as torch's default reduction, so `δ^l` carries 1/n.",
            "An error is normwise relative, `max|manual − torch| / max|torch|` per tensor; NaN or Inf is a failure.",
            f"float64 tolerance: {tol.FLOAT64_RTOL:g} relative. Along a trajectory the allowance is the larger of that"
            f" and {tol.FLOAT64_ORDER:g}× a measured noise floor: torch restarted 1 ulp away with one rounding error "
            "added to each gradient (the float64 noise run).",
            f"float32 is judged against a float64 reference of the same problem; torch's own float32 error against "
            f"that reference is the noise floor, and manual may be at most {tol.FLOAT32_ORDER:g}× it "
            f"(floor at least {tol.FLOAT32_MIN_FLOOR:.1e})."]
    if spec.patience is not None:
        conv.append("Early stopping watches the **test split** (the lecture has no validation split), "
                    "so the test accuracy below is optimistic.")
    B += [("h", 2, "Conventions"), ("ul", conv)]
    # forward and gradients
    head = ["section", "layer", "tensor", "shape", "max abs", "relative", "noise floor", "allowed", "ok"]
    B += [("h", 2, "Forward pass and gradients"),
          ("p", f"One forward and backward pass on the 120 training flowers from the shared initial weights, "
                f"{spec.dtype}. Finite differences are a third opinion on manual's gradients (float64 central "
                f"differences, relative to the largest gradient entry)."),
          ("img", "errors.png", FIGURES["errors.png"]),
          ("table", head, _check_rows(res.forward) + _check_rows(res.gradients) + _check_rows(res.finite_differences))]
    for sec in (res.forward, res.gradients, res.finite_differences):
        if sec.notes:
            B.append(("ul", [f"{sec.name}: {n}" for n in sec.notes]))
    # trajectory
    t = r["trajectory_summary"]
    fail = t["first_failing_step"]
    B += [("h", 2, "Training trajectory"),
          ("p", f"Both implementations train from the same initial weights on the same schedule "
                f"({t['steps']} steps); after every step every parameter is compared."),
          ("ul", [f"largest parameter divergence: {_e(t['max_param_divergence'])} (step {t['at_step']}); "
                  f"largest noise floor: {_e(t['max_noise_floor'])}",
                  f"largest loss difference: {_e(t['max_loss_abs_diff'])} "
                  f"({t['equal_loss_steps']} of {t['steps']} losses bit-identical)",
                  "first failing step: " + ("none" if fail is None else f"**{fail}** — "
                                            + _failure_text(res.trajectory.first_failure)),
                  f"epochs run: manual {t['epochs_run']['manual']}, torch {t['epochs_run']['torch']}"
                  + ("" if spec.patience is None else f"; best epoch manual {t['best_epoch']['manual']}, "
                     f"torch {t['best_epoch']['torch']} (restored)")]),
          ("img", "loss.png", FIGURES["loss.png"]),
          ("table", ["tensor", "worst step", "max abs", "relative", "noise floor", "allowed", "ok"],
           [[c.tensor, _e(c.step), _e(c.max_abs), _e(c.rel), _e(c.torch_rel), _e(c.allowed),
             "yes" if c.ok else "**NO**"] for c in res.trajectory.checks])]
    if res.trajectory.notes:
        B.append(("ul", res.trajectory.notes))
    B.append(("img", "divergence.png", FIGURES["divergence.png"]))
    if r["companion"] is not None:
        c = r["companion"]
        B.append(("p", f"Companion run in {c['dtype']} (same spec, same seed): "
                       f"{'agrees' if c['agree'] else '**disagrees**'}; largest divergence "
                       f"{_e(c['summary']['max_param_divergence'])} against noise floor "
                       f"{_e(c['summary']['max_noise_floor'])}" + ("" if c["summary"]["first_failing_step"] is None
                       else f", first failing step {c['summary']['first_failing_step']}") + "."))
    # test split
    te = r["test"]
    B += [("h", 2, "Test accuracy and predictions"),
          ("p", f"Test split (30 flowers): manual {te['manual']['correct']}/30, torch {te['torch']['correct']}/30 "
                f"(weights: manual {te['manual']['weights']}, torch {te['torch']['weights']}). "
                f"Training split after the last epoch: manual {_pct(t['train_accuracy']['manual'])}, "
                f"torch {_pct(t['train_accuracy']['torch'])}."),
          ("img", "confusion.png", FIGURES["confusion.png"]),
          ("table", ["#", "iris row", "true", "manual", "manual a^L", "torch", "torch a^L", "same"],
           [[i, row, CLASS_NAMES[y], CLASS_NAMES[pm], f"{te['manual']['output'][i][pm]:.6f}", CLASS_NAMES[pt],
             f"{te['torch']['output'][i][pt]:.6f}", "yes" if pm == pt else "**NO**"]
            for i, (row, y, pm, pt) in enumerate(zip(te["rows"], te["y"], te["manual"]["pred"], te["torch"]["pred"]))])]
    if r["slide"] is not None:
        B += _slide_blocks(r["slide"])
    B += [("h", 2, "Files"), ("table", ["file", "what", "sha256 (first 16)"],
                              [[f"`{k}`", v[0], v[1][:16]] for k, v in files.items()])]
    rp = r["replay"]
    sched = ("`schedule` in results.json lists the training-split rows of every step, as indices into the "
             "training split in its canonical order (the first 40 flowers of each species, `load_iris()` order).")
    if rp is None:
        B.append(("p", sched + f" This run uses {spec.optimizer}"
                  + (", weight decay" if spec.weight_decay else "") + (", dropout" if spec.dropout else "")
                  + ", so replaying it needs that optimiser's state (and the dropout masks), not plain SGD."))
    else:
        B += [("p", sched + f" Replayed here with plain SGD from init.safetensors ({rp['steps']} steps): "
                    + ("final-manual.safetensors **bit for bit**" if rp["manual_bit_identical"] else
                       f"final-manual.safetensors **NOT** bit for bit (max abs {_e(rp['manual_max_abs'])})")
                    + f"; final-torch.safetensors to {_e(rp['torch_rel'])} relative (allowed "
                    f"{_e(rp['torch_allowed'])}: {'yes' if rp['torch_ok'] else '**NO**'}). The replay:"),
              ("pre", REPLAY, "python")]
    env = {**r["environment"], "cpu": _cpu()}
    B += [("h", 2, "Environment"), ("table", ["", "version"], [[k, v] for k, v in env.items()])]
    return B


REPLAY = """import json
from manual import MLP, load_weights
from compare.data import iris_split
r = json.load(open("results.json")); c = r["config"]
net = MLP.from_weights(load_weights("init.safetensors"), c["activation"], c["output"], c["loss"])
d = iris_split(c["dtype"], c["standardize"])
for rows in r["schedule"]:
    _, g = net.gradients(d.X_train[rows], d.y_train[rows])
    for name, p in zip(net.names, net.params):
        p -= c["lr"] * g[name]
# net.weights() == load_weights("final-manual.safetensors")"""


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")) + f", {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return f"{os.cpu_count()} cores"


def _pct(acc: list) -> str:
    return f"{acc[-1]:.1%}" if acc else "—"


def _failure_text(c: H.TensorCheck | None) -> str:
    if c is None:
        return ""
    where = f"layer {c.layer}, " if c.layer is not None else ""
    val = f"{c.index}: manual {c.manual!r} vs torch {c.torch!r}" if c.index else ""
    return f"{where}{c.tensor}{val} (relative {_e(c.rel)}, allowed {_e(c.allowed)})"


def _slide_blocks(s: dict) -> list:
    rows = []
    for i, (x, y) in enumerate(zip(s["flowers"], s["labels"])):
        for j in range(3):
            star = " *" if [i, j] in s["misprints"] else ""
            rows.append([i + 1 if j == 0 else "", str(x) if j == 0 else "", CLASS_NAMES[y] if j == 0 else "",
                         CLASS_NAMES[j], f"{s['printed'][i][j]:.8e}{star}", f"{s['manual'][i][j]:.8e}",
                         f"{s['torch'][i][j]:.8e}", f"{s['rel_to_printed'][i][j]:.1e}"])
    mis = "; ".join(f"[{i},{j}] printed {s['printed'][i][j]:.8e}, recomputed {s['manual'][i][j]:.9f}"
                    for i, j in s["misprints"])
    return [("h", 2, "The slide's six flowers"),
            ("p", f"The slide's printed weights (transposed into this layout) on its six flowers, float64. manual vs "
                  f"torch: relative {_e(s['manual_vs_torch_rel'])} (allowed {_e(s['allowed'])}): "
                  f"{'agree' if s['agree'] else '**DISAGREE**'}. Both match the printed probabilities to about "
                  f"{s['significant_digits']} significant digits (largest relative difference "
                  f"{_e(s['max_rel_to_printed_excluding_misprints'])}, the known misprint excepted), consistent with "
                  f"the slide's float32 computation and print (float32 eps = {np.finfo(np.float32).eps:.1e}). Predicted "
                  f"classes: {', '.join(CLASS_NAMES[k] for k in s['predicted'])}."),
            ("table", ["flower", "features", "true", "class", "slide (printed)", "manual", "torch", "rel. to slide"], rows),
            ("p", f"\\* a known misprint on the slide (the slide dropped a digit): {mis}.")]


# ---- the command -----------------------------------------------------------------------------
class _Stages:
    """A tqdm bar over the report's stages, shown only when stderr is a terminal."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=not sys.stderr.isatty(), file=sys.stderr, leave=False,
                        bar_format="{desc:<28}{bar:30} {n_fmt}/{total_fmt} [{elapsed}]")
        self.started = False

    def __call__(self, stage: str):
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description_str(stage)

    def close(self):
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_report(spec: H.Spec, out: Path, slide: bool = True, companion: bool = True, stream=None) -> bool:
    """Run the check (and the companion dtype, the slide) and write the report into ``out``.
    Returns True when everything agrees."""
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: once here, before the fork)

    stream = stream or sys.stdout
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only cost, and can spin badly on a busy machine
    data = iris_split(spec.dtype, spec.standardize)
    job = _Companion(replace(spec, dtype=_other(spec.dtype))) if companion else None
    stage = _Stages(7 + companion + slide)  # after the fork: tqdm's monitor thread must not be forked
    comp = None
    try:
        res, traj = H.run_check(spec, data, progress=stage)
        if slide:
            stage("slide flowers")
        sl = slide_flowers(spec) if slide else None
        stage("test predictions")
        te = test_predictions(spec, traj, data)
        stage("figures")
        figs = main_figures(spec, res, traj, te)  # while the companion may still run
        if companion:
            stage(f"companion run ({_other(spec.dtype)})")
            comp = job.result()
        stage("figures")
        figs["divergence.png"] = divergence_figure(spec, res, traj, comp)
        for name in FIGURES:
            write_file(out / name, figs[name])
        stage("weights")
        files = _write_weights(out, spec, traj)
        stage("replay")
        allowed = tol.FLOAT64_RTOL if spec.dtype == "float64" else tol.float32_allowed(0.0)
        if traj.steps:
            allowed = max(allowed, float(allowance_per_step(traj, spec.dtype)[-1]))
        rp = replay(spec, out, traj.schedule, data, allowed)
        stage("report")
        r = results(spec, res, traj, comp, te, sl, files, rp)
        write_file(out / "results.json", dump_json(r).encode())
        files = {"results.json": ("everything above as data, with `schedule`", _sha(out / "results.json")),
                 **{k: (v, _sha(out / k)) for k, v in FIGURES.items()}, **files}
        b = blocks(r, res, spec, files)
        write_file(out / "report.md", render_md(b).encode())
        write_file(out / "report.html", render_html(b, out, b[0][2]).encode())
    finally:
        if job is not None:
            job.cancel()
        stage.close()
        torch.set_num_threads(threads)
    print(terminal_summary(r, out, time.perf_counter() - t0), file=stream)
    return r["agree"]


def _companion(cspec: H.Spec) -> H.Trajectory:
    import torch

    torch.set_num_threads(1)
    return H.trajectory_section(cspec, H.initial_weights(cspec), iris_split(cspec.dtype, cspec.standardize))


class _Companion:
    """The companion trajectory (as long as the main one), computed in a forked process beside the main
    run where fork exists and there is a second core, else in this process on ``result()``.  One torch
    thread either way, so the results are identical."""

    def __init__(self, cspec: H.Spec):
        self.cspec, self.pool = cspec, None
        if sys.platform == "linux" and (os.cpu_count() or 1) > 1 and not os.environ.get("COMPARE_REPORT_NO_FORK"):
            self.pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
            self.future = self.pool.submit(_companion, cspec)

    def result(self) -> H.Trajectory:
        try:
            return self.future.result() if self.pool else _companion(self.cspec)
        finally:
            self.cancel()

    def cancel(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def dump_json(r, depth: int = 0) -> str:
    """results.json: dicts and lists of dicts one entry per line, anything short or numeric on one line."""
    flat = json.dumps(r, separators=(", ", ": "), allow_nan=False)
    pad = " " * (depth + 1)
    if isinstance(r, dict) and r and len(flat) > 100:
        items = [f"{pad}{json.dumps(k)}: {dump_json(v, depth + 1)}" for k, v in r.items()]
    elif isinstance(r, list) and any(isinstance(v, dict) for v in r):
        items = [pad + dump_json(v, depth + 1) for v in r]
    else:
        return flat + ("\n" if depth == 0 else "")
    o, c = "{}" if isinstance(r, dict) else "[]"
    return o + "\n" + ",\n".join(items) + "\n" + " " * depth + c + ("\n" if depth == 0 else "")


def main_figures(spec, res, traj, te) -> dict[str, bytes]:
    def checks(sec):
        return [{"tensor": c.tensor, "layer": c.layer, "rel": c.rel, "allowed": c.allowed, "floor": c.torch_rel}
                for c in sorted(sec.checks, key=lambda c: (c.layer or 99))]

    return {"loss.png": figures.loss_curves(traj.manual.loss, traj.torch.loss, spec.dtype),
            "errors.png": figures.tensor_errors([("forward: z, a per layer, loss", checks(res.forward)),
                                                 ("gradients: δ, ∂C/∂W, ∂C/∂b per layer", checks(res.gradients))],
                                                spec.dtype),
            "confusion.png": figures.confusion(
                te["y"], {f"manual ({te['manual']['weights']})": te["manual"]["pred"],
                          f"torch ({te['torch']['weights']})": te["torch"]["pred"]},
                CLASS_NAMES, "Test split (30 flowers): true class vs predicted")}


def divergence_figure(spec, res, traj, comp) -> bytes:
    panels = [_panel(spec.dtype, traj, res.trajectory)]
    if comp is not None:
        panels.append(_panel(_other(spec.dtype), comp, comp.section))
    return figures.divergence(sorted(panels, key=lambda p: p["dtype"], reverse=True))  # float64 on top


def _other(dtype: str) -> str:
    return "float32" if dtype == "float64" else "float64"


def _panel(dtype: str, traj: H.Trajectory, sec: H.Section) -> dict:
    f32 = dtype == "float32"
    return {"dtype": dtype,
            "title": (f"float32: both float32 runs against a float64 reference run" if f32
                      else "float64: manual against torch"),
            "manual": traj.param_rel_per_step, "allowance": allowance_per_step(traj, dtype),
            "manual_label": "manual float32 vs float64 reference" if f32 else "manual vs torch",
            "floor": traj.floor_per_step,
            "floor_label": ("noise run: torch float32 + rounding noise, vs float64 reference (noise floor)" if f32
                            else "noise run: torch 1 ulp away + rounding noise, vs torch (noise floor)"),
            "first_failure": None if sec.first_failure is None else sec.first_failure.step}


def _write_weights(out: Path, spec: H.Spec, traj: H.Trajectory) -> dict:
    meta = lambda what: {"description": f"{what}; config {json.dumps(H._jsonable(asdict(spec)), sort_keys=True)}"}  # noqa: E731
    files = {"init.safetensors": (_canonical(H.initial_weights(spec)), "the shared initial weights"),
             "final-manual.safetensors": (traj.manual.final, "manual's weights after the last step of `schedule`"),
             "final-torch.safetensors": (traj.torch.final, "torch's weights after the last step of `schedule`")}
    for name, run in (("manual", traj.manual), ("torch", traj.torch)):
        path = out / f"restored-{name}.safetensors"
        if run.restored is not None:
            files[path.name] = (run.restored, f"{name}'s best weights, restored by early stopping")
        elif path.exists():
            path.unlink()  # stale, from an earlier report with early stopping
    for name, (w, what) in files.items():
        manual.save_weights(out / name, _canonical(w), metadata=meta(what))
        os.chmod(out / name, 0o666 & ~_umask())
    return {name: (what, _sha(out / name)) for name, (w, what) in files.items()}


def results(spec, res, traj, comp, te, sl, files, rp) -> dict:
    d = res.to_dict()
    parts = {"forward": res.forward.agree, "gradients": res.gradients.agree,
             "finite differences": res.finite_differences.agree, f"trajectory ({spec.dtype})": res.trajectory.agree}
    if comp is not None:
        parts[f"trajectory ({_other(spec.dtype)} companion)"] = comp.section.agree
    if sl is not None:
        parts["slide flowers"] = sl["agree"]
    if rp is not None:
        parts["replay of schedule"] = rp["manual_bit_identical"] and rp["torch_ok"]
    r = {"agree": all(parts.values()), "parts": parts, "config": d["config"], "environment": d["environment"],
         "forward": d["forward"], "gradients": d["gradients"], "finite_differences": d["finite_differences"],
         "trajectory": d["trajectory"], "trajectory_summary": _summary(traj, res.trajectory),
         "per_step": _per_step(traj, spec.dtype),
         "companion": None if comp is None else {
             "dtype": _other(spec.dtype), "agree": comp.section.agree,
             "trajectory": asdict(comp.section), "summary": _summary(comp, comp.section),
             "per_step": _per_step(comp, _other(spec.dtype))},
         "test": te, "slide": sl, "replay": rp, "files": {k: {"what": v[0], "sha256": v[1]} for k, v in files.items()},
         "schedule": traj.schedule}
    return H._jsonable(_lists(r))


def _lists(x):
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x.tolist() if isinstance(x, np.ndarray) else x


def terminal_summary(r: dict, out: Path, seconds: float) -> str:
    t, te = r["trajectory_summary"], r["test"]
    worst = lambda k: max((c["rel"] for c in r[k]["checks"] if isinstance(c["rel"], float)), default=0.0)  # noqa: E731
    lines = [f"{'AGREE' if r['agree'] else 'DISAGREE'}: manual and torch on iris, {t['steps']} steps "
             f"({r['config']['dtype']}, {r['config']['optimizer']}, lr {r['config']['lr']:g})",
             f"  forward {worst('forward'):.1e}, gradients {worst('gradients'):.1e}, "
             f"finite differences {worst('finite_differences'):.1e}; trajectory max divergence "
             f"{t['max_param_divergence']:.1e} (noise floor {t['max_noise_floor']:.1e})"
             + ("" if t["first_failing_step"] is None else f", FIRST FAILING STEP {t['first_failing_step']}")]
    if r["companion"] is not None:
        c = r["companion"]
        lines.append(f"  {c['dtype']} companion: {'agrees' if c['agree'] else 'DISAGREES'}, max divergence "
                     f"{c['summary']['max_param_divergence']:.1e} (noise floor {c['summary']['max_noise_floor']:.1e})")
    lines.append(f"  test accuracy: manual {te['manual']['correct']}/30, torch {te['torch']['correct']}/30"
                 + ("" if r["slide"] is None else f"; slide flowers: manual vs torch "
                    f"{r['slide']['manual_vs_torch_rel']:.1e}, {r['slide']['significant_digits']} digits of the slide"))
    if not r["agree"]:
        lines.append("  disagreeing: " + ", ".join(k for k, v in r["parts"].items() if not v))
    lines.append(f"  report: {out / 'report.html'} (and report.md, results.json, figures, weights) in {seconds:.1f} s")
    return "\n".join(lines)
