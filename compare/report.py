"""``python -m compare report --out DIR``: the comparison report, for a person and as data.

DIR receives report.md, a self-contained report.html (figures embedded), the figures as PNG,
results.json (everything in the report as data, including "agree" and "schedule"), and the weights
init.safetensors, final-manual.safetensors, final-torch.safetensors (restored-*.safetensors when
early stopping restored the best weights).  The report is built in a hidden folder beside DIR and
swapped in whole at the end (compare/outputs.py's ReportDir), so DIR holds the old report or the new
one, complete, whatever interrupts the run; an existing DIR holding anything but a previous report is
refused unless ``force``.  results.json holds no timestamps or timings: one seed, one file.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import manual
from manual.weights import atomic_write_bytes
from . import figures
from . import harness as H
from . import tolerances as tol
from .outputs import ReportDir
from .data import CLASS_NAMES, SLIDE_FLOWERS, SLIDE_LABELS, SLIDE_MISPRINTS, SLIDE_PROBS, iris_split, slide_weights
from .report_text import FIGURES, blocks, render_html, render_md, terminal_summary


def prepare_out_dir(path, force: bool = False) -> ReportDir:
    """The output folder, checked now and created (or swapped for the new report) only when the report is
    complete: an empty path, an existing path that is not a folder, a dangling symlink, a folder that holds
    anything but a previous report (unless ``force``) or one whose parent cannot be written is refused
    (outputs.OutputError, a ValueError)."""
    return ReportDir(path, force=force)


# ---- the computations beyond run_check -------------------------------------------------------
def _torch_outputs(weights, spec: H.Spec, X) -> tuple[np.ndarray, np.ndarray]:
    """torch_ref's (a^L, predicted classes) for the rows of X; the classes are the arg-max of the logits z^L."""
    import torch
    import torch_ref

    dev = H.torch_device(spec)
    model = torch_ref.from_shared(weights, spec.activation, spec.output, spec.dropout, dev).eval()
    with torch.no_grad():
        z = model(torch.as_tensor(X, device=dev))
        return model.output(z).cpu().numpy(), z.argmax(dim=1).cpu().numpy()


def _manual_outputs(weights, spec: H.Spec, X) -> tuple[np.ndarray, np.ndarray]:
    """manual's (a^L, predicted classes) for the rows of X (MLP.predict: the arg-max of z^L)."""
    net = manual.MLP.from_weights(weights, spec.activation, spec.output, spec.loss)
    return net.forward(X), net.predict(X)


def test_split_predictions(spec: H.Spec, traj: H.Trajectory, data) -> dict:
    """Both implementations' outputs on the test split, with the weights each trainer returns."""
    out = {"rows": data.test_rows.tolist(), "y": data.y_test.tolist()}
    for name, run in (("manual", traj.manual), ("torch", traj.torch)):
        w = run.restored if run.restored is not None else run.final
        a, pred = (_manual_outputs if name == "manual" else _torch_outputs)(w, spec, data.X_test)
        out[name] = {"weights": "restored" if run.restored is not None else "final", "pred": pred.tolist(),
                     "output": a.tolist(), "correct": int(np.sum(pred == data.y_test)), "n": len(pred)}
    return out


def slide_flowers(spec: H.Spec) -> dict:
    """The slide's printed weights on its six flowers: manual, torch and the printed probabilities."""
    w = slide_weights("float64")
    s = replace(spec, activation="sigmoid", output="softmax", loss="cross_entropy", hidden=(6,), dropout=0.0,
                dtype="float64", weights_file=None)
    pm, predicted = _manual_outputs(w, s, SLIDE_FLOWERS.astype(np.float64))
    pt, _ = _torch_outputs(w, s, SLIDE_FLOWERS.astype(np.float64))
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
            "predicted": predicted.tolist()}


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


def _per_step(traj: H.Trajectory) -> dict:
    return {"loss_manual": traj.manual.loss, "loss_torch": traj.torch.loss,
            "param_divergence": traj.param_rel_per_step, "noise_floor": traj.floor_per_step,
            "allowance": traj.allowed_per_step}


def _summary(traj: H.Trajectory, sec: H.Section) -> dict:
    d, n = traj.param_rel_per_step, traj.steps
    ldiff = np.abs(traj.manual.loss[:n] - traj.torch.loss[:n])
    m, t = traj.manual, traj.torch
    return {"steps": n, "max_param_divergence": float(np.max(d)), "at_step": int(np.argmax(d)),
            "max_noise_floor": float(np.max(traj.floor_per_step)),
            "max_loss_abs_diff": float(np.max(ldiff)) if n else 0.0,
            "equal_loss_steps": int(np.sum(ldiff == 0)),
            "first_failing_step": None if sec.first_failure is None else sec.first_failure.step,
            "horizon": traj.horizon,  # the first step not judged (rounding amplified in the noise run)
            "first_failure": None if sec.first_failure is None else asdict(sec.first_failure),
            "epochs_run": {"manual": m.epochs_run, "torch": t.epochs_run},
            "stopped_early": {"manual": m.stopped_early, "torch": t.stopped_early},
            "best_epoch": {"manual": m.best_epoch, "torch": t.best_epoch},
            "restored_best": {"manual": m.restored is not None, "torch": t.restored is not None},
            "train_accuracy": {"manual": m.train_accuracy, "torch": t.train_accuracy},
            "test_accuracy": {"manual": m.val_accuracy, "torch": t.val_accuracy}}


# ---- the command -----------------------------------------------------------------------------
class _Stages:
    """A tqdm bar over the report's stages, shown only when stderr is a terminal."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=not sys.stderr.isatty(), file=sys.stderr, leave=False,
                        bar_format="{desc:<30}{bar:30} {n_fmt}/{total_fmt} [{elapsed}]")
        self.started = False

    def __call__(self, stage: str):
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description_str(stage)

    def close(self):
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def _companion(cspec: H.Spec) -> H.Trajectory:
    with H.one_torch_thread():
        return H.trajectory_section(cspec, H.initial_weights(cspec), iris_split(cspec.dtype, cspec.standardize))


def _companion_child(cspec: H.Spec, conn) -> None:
    """The forked process: SIGINT is the parent's to act on (it kills this process); the result or the
    exception goes back through ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        msg = ("ok", _companion(cspec))
    except BaseException as e:  # noqa: BLE001  (re-raised in the parent)
        msg = ("error", e)
    try:
        conn.send(msg)
    except Exception as e:  # noqa: BLE001  (an exception that does not pickle)
        conn.send(("error", RuntimeError(f"companion run failed: {type(msg[1]).__name__}: {msg[1]}; ({e})")))
    conn.close()


class _Companion:
    """The companion trajectory in the other dtype (as long as the main one), computed in a forked process
    beside the main run where fork exists and there is a second core, else in this process on ``result()``.
    One torch thread either way, so the results are the same bits.  ``cancel()`` kills the process at once
    (a SIGINT to the main process does not wait for the companion)."""

    def __init__(self, cspec: H.Spec):
        self.cspec, self.proc = cspec, None
        if sys.platform == "linux" and (os.cpu_count() or 1) > 1 and not os.environ.get("COMPARE_REPORT_NO_FORK"):
            ctx = mp.get_context("fork")
            self.conn, child = ctx.Pipe(duplex=False)
            self.proc = ctx.Process(target=_companion_child, args=(cspec, child), daemon=True)
            self.proc.start()
            child.close()

    def result(self) -> H.Trajectory:
        if self.proc is None:
            return _companion(self.cspec)
        try:
            try:
                status, value = self.conn.recv()
            except EOFError:
                raise RuntimeError(f"the companion process ended without a result (exit status "
                                   f"{self.proc.join(5) or self.proc.exitcode})") from None
            if status == "error":
                raise value
            return value
        finally:
            self.cancel()

    def cancel(self):
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.conn.close()
            self.proc = None


def write_report(spec: H.Spec, out, slide: bool = True, companion: bool = True, stream=None,
                 force: bool = False) -> bool:
    """Run the check (with the companion run in the other dtype, the slide's flowers) and write the report
    into ``out`` (a folder path or prepare_out_dir's ReportDir; see the module docstring).  Returns True when
    everything agrees."""
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: once here, before the fork)

    target = out if isinstance(out, ReportDir) else prepare_out_dir(out, force=force)
    t0 = time.perf_counter()
    build = target.begin()
    try:
        with H.one_torch_thread():
            r = _write_report(spec, build, slide, companion)
        target.commit()
    finally:
        target.abort()  # nothing left when it was committed
    print(terminal_summary(r, target.path, time.perf_counter() - t0), file=stream or sys.stdout)
    return r["agree"]


def _write_report(spec, out: Path, slide, companion) -> dict:
    """Every file of the report, written into the (new, empty) build folder ``out``; returns results.json's dict."""
    data = iris_split(spec.dtype, spec.standardize)
    cspec = replace(spec, dtype="float32" if spec.dtype == "float64" else "float64")
    job = _Companion(cspec) if companion else None
    stage = _Stages(9 + companion + slide)  # after the fork: tqdm's monitor thread must not be forked
    try:
        res, traj = H.run_check(spec, data, progress=stage)
        r = {"agree": None, "parts": None, "config": None, "environment": None,
             **{k: v for k, v in res.to_dict().items() if k not in ("agree", "steps")}}
        r["environment"]["cpu"] = _cpu()
        r["trajectory_summary"] = _summary(traj, res.trajectory)
        r["per_step"] = _per_step(traj)
        stage("test predictions")
        r["test"], r["class_names"] = test_split_predictions(spec, traj, data), list(CLASS_NAMES)
        if slide:
            stage("slide's six flowers")
        r["slide"] = slide_flowers(spec) if slide else None
        stage("figures")
        r = _jsonable(r)
        figs = figures.report_figures(r, ["loss.png", "errors.png", "confusion.png"])  # while the companion runs
        r["companion"] = None
        if job is not None:
            stage(f"companion run ({cspec.dtype})")
            try:
                comp = job.result()
                r["companion"] = _jsonable({"dtype": cspec.dtype, "agree": comp.section.agree,
                                            "trajectory": asdict(comp.section),
                                            "summary": _summary(comp, comp.section),
                                            "per_step": _per_step(comp)})
            except FloatingPointError as e:  # the other dtype diverged: nothing to compare, said so
                r["companion"] = {"dtype": cspec.dtype, "agree": None, "error": f"training diverged: {e}"}
        stage("divergence figure")
        figs.update(figures.report_figures(r, ["divergence.png"]))
        for name in FIGURES:
            atomic_write_bytes(out / name, figs[name])
        stage("weights")
        files = _write_weights(out, spec, traj)
        stage("replay of the schedule")
        # torch's final weights against the replay (= manual's): the trajectory's limit at the last step;
        # in float32 that limit is against the float64 reference, and torch sits up to one floor from it
        allowed = float(r["per_step"]["allowance"][-1]) * (1 if spec.dtype == "float64" else 1 + 1 / tol.FLOAT32_ORDER)
        r["replay"] = _jsonable(replay(spec, out, traj.schedule, data, allowed))
        stage("report")
        r["parts"] = {"forward": res.forward.agree, "gradients": res.gradients.agree,
                      "finite differences": res.finite_differences.agree,
                      f"trajectory ({spec.dtype})": res.trajectory.agree}
        if r["companion"] is not None and r["companion"]["agree"] is not None:
            r["parts"][f"trajectory ({cspec.dtype} companion)"] = r["companion"]["agree"]
        if r["slide"] is not None:
            r["parts"]["slide's six flowers"] = r["slide"]["agree"]
        if r["replay"] is not None:
            r["parts"]["replay of the schedule"] = r["replay"]["manual_bit_identical"] and r["replay"]["torch_ok"]
        r["agree"] = all(r["parts"].values())
        r["files"] = {**{k: {"what": v, "sha256": _sha(out / k)} for k, v in FIGURES.items()}, **files}
        r["schedule"] = traj.schedule
        atomic_write_bytes(out / "results.json", dump_json(r).encode())
        b = blocks({**r, "files": {"results.json": {"what": "everything in this report as data, with `schedule`",
                                                    "sha256": _sha(out / "results.json")}, **r["files"]}})
        atomic_write_bytes(out / "report.md", render_md(b).encode())
        atomic_write_bytes(out / "report.html", render_html(b, out).encode())
    finally:
        if job is not None:
            job.cancel()
        stage.close()
    return r


def _write_weights(out: Path, spec: H.Spec, traj: H.Trajectory) -> dict:
    config = json.dumps(_jsonable(asdict(spec)), sort_keys=True)
    files = {"init.safetensors": (H.initial_weights(spec), "the shared initial weights"),
             "final-manual.safetensors": (traj.manual.final, "manual's weights after the last step of `schedule`"),
             "final-torch.safetensors": (traj.torch.final, "torch's weights after the last step of `schedule`")}
    for name, run in (("manual", traj.manual), ("torch", traj.torch)):
        path = out / f"restored-{name}.safetensors"
        if run.restored is not None:
            files[path.name] = (run.restored, f"{name}'s best weights, restored by early stopping")
        elif path.exists():
            path.unlink()  # stale, from an earlier report with early stopping
    for name, (w, what) in files.items():
        manual.save_weights(out / name, w, metadata={"description": f"{what}; config {config}"})
    return {name: {"what": what, "sha256": _sha(out / name)} for name, (w, what) in files.items()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        return f"{model}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return f"{os.cpu_count()} cores"


def _jsonable(x):
    """numpy arrays to lists, then harness's JSON-safe mapping (NaN/Inf as strings)."""
    def lists(v):
        if isinstance(v, dict):
            return {k: lists(w) for k, w in v.items()}
        if isinstance(v, (list, tuple)):
            return [lists(w) for w in v]
        return v.tolist() if isinstance(v, np.ndarray) else v
    return H._jsonable(lists(x))


def dump_json(r, depth: int = 0) -> str:
    """results.json: dicts and lists of dicts one entry per line, anything short or numeric on one line."""
    flat = json.dumps(r, separators=(",", ":"), allow_nan=False)
    pad = " " * (depth + 1)
    if isinstance(r, dict) and r and len(flat) > 100:
        items = [f"{pad}{json.dumps(k)}: {dump_json(v, depth + 1)}" for k, v in r.items()]
    elif isinstance(r, list) and any(isinstance(v, dict) for v in r):
        items = [pad + dump_json(v, depth + 1) for v in r]
    else:
        return flat + ("\n" if depth == 0 else "")
    o, c = "{}" if isinstance(r, dict) else "[]"
    return o + "\n" + ",\n".join(items) + "\n" + " " * depth + c + ("\n" if depth == 0 else "")
