"""``python -m compare report --out DIR``: the comparison report, for a person and as data.

DIR receives report.md, a self-contained report.html (figures embedded), the figures as PNG,
results.json (everything in the report as data, including "verdict", "agree" and "schedule"), and the
weights init.safetensors, final-candidate.safetensors, final-reference.safetensors
(restored-candidate/-reference.safetensors when early stopping restored the best weights); each weights
file's metadata names the implementation.  Files and JSON keys name roles; text and legends name the
implementations ("torch (candidate)").  The report is built in a hidden folder beside DIR and swapped in
whole at the end (compare/report_dir.py), so DIR holds the old report or the new one, complete,
whatever interrupts the run; an existing DIR holding anything but a previous report is refused unless
``force``.  results.json holds no timestamps or timings: one seed, one file.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from manual.weights import atomic_write_bytes, save_weights

from . import figures, report_data
from . import harness as H
from .data import load_split
from .protocol import fork_safe
from .registry import load
from .report_data import ROLES, per_step, replay, slide_flowers, summary, test_split_predictions
from .report_dir import ReportDir
from .report_render import render_html, render_md
from .report_summary import terminal_summary
from .report_text import FIGURES, blocks
from .results import jsonable
from .spec import Spec
from .trajectory import Trajectory, trajectory


def prepare_out_dir(path, force: bool = False) -> ReportDir:
    """The output folder, checked now and created (or swapped for the new report) only when the report is
    complete: an empty path, an existing path that is not a folder, a dangling symlink, a folder that holds
    anything but a previous report (unless ``force``) or one whose parent cannot be written is refused
    (outputs.OutputError, a ValueError)."""
    return ReportDir(path, force=force)


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


def _companion(cand, ref, cspec: Spec) -> Trajectory:
    with H.one_torch_thread():
        return trajectory(cand, ref, cspec, H.initial_weights(cspec),
                          H.data_for(cspec, load_split(cspec)))


def _reload(impl, role: str):
    """The implementation re-loaded by the name it was loaded by in the child (fresh state); the inherited object when its
    name does not resolve (an object handed to write_report directly)."""
    if getattr(impl, "source", None) is None:  # an object handed over directly: its forked copy serves
        return impl
    try:
        return load(impl.source, role)
    except Exception:  # noqa: BLE001  (any failure to re-load: the forked copy of the object serves)
        return impl


def _companion_child(cand, ref, cspec: Spec, conn) -> None:
    """The forked process: SIGINT is the parent's to act on (it kills this process); the result or the
    exception goes back through ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        msg = ("ok", _companion(_reload(cand, "candidate"), _reload(ref, "reference"), cspec))
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

    def __init__(self, cand, ref, cspec: Spec):
        self.args, self.proc = (cand, ref, cspec), None
        if (sys.platform == "linux" and (os.cpu_count() or 1) > 1 and not os.environ.get("COMPARE_REPORT_NO_FORK")
                and fork_safe(cand, ref)):
            ctx = mp.get_context("fork")
            self.conn, child = ctx.Pipe(duplex=False)
            self.proc = ctx.Process(target=_companion_child, args=(*self.args, child), daemon=True)
            self.proc.start()
            child.close()

    def result(self) -> Trajectory:
        if self.proc is None:
            return _companion(*self.args)
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


def write_report(spec: Spec, out, candidate="manual", reference="torch", slide: bool = True,
                 companion: bool = True, stream=None, force: bool = False) -> str:
    """Run the check of ``candidate`` against ``reference`` (names or implementation objects), with the
    companion run in the other dtype and the slide's flowers (iris only), and write the report into ``out`` (a folder
    path or prepare_out_dir's ReportDir; see the module docstring).  Returns the report's verdict:
    "agree", "disagree" or "inconclusive"."""
    cand, ref = H.resolve(candidate, "candidate"), H.resolve(reference, "reference")
    if "torch" in sys.modules:
        import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: once here, before the fork)

    target = out if isinstance(out, ReportDir) else prepare_out_dir(out, force=force)
    t0 = time.perf_counter()
    build = target.begin()
    try:
        with H.one_torch_thread():
            r = _write_report(spec, build, cand, ref, slide, companion)
        target.commit()
    finally:
        target.abort()  # nothing left when it was committed
    print(terminal_summary(r, target.path, time.perf_counter() - t0), file=stream or sys.stdout)
    return r["verdict"]


def _verdict(res, parts: dict) -> tuple[str, str | None]:
    """The report's verdict: disagree when any part disagrees; else the check's own verdict (the
    companion, the slide and the replay add evidence but cannot make an inconclusive check conclusive)."""
    bad = [k for k, v in parts.items() if v == "disagree"]
    if bad:
        return "disagree", res.reason if res.verdict == "disagree" else f"{bad[0]} disagrees"
    return res.verdict, res.reason


def _write_report(spec, out: Path, cand, ref, slide, companion) -> dict:
    """Every file of the report, written into the (new, empty) build folder ``out``; returns results.json's dict."""
    data = load_split(spec)
    slide = slide and report_data.has_slide(spec)  # the slide's weights are iris's 4-6-3 network: iris only
    impls = {"candidate": cand, "reference": ref}
    cspec = replace(spec, dtype="float32" if spec.dtype == "float64" else "float64")
    job = _Companion(cand, ref, cspec) if companion else None
    stage = _Stages(9 + companion + slide)  # after the fork: tqdm's monitor thread must not be forked
    try:
        res, traj = H.check(cand, ref, spec, data, progress=stage)
        if traj is None:
            raise ValueError(f"the trajectory is not available: {'; '.join(res.trajectory.notes)} "
                             "(a report needs both sides' training runs; use `check`)")
        r = {"verdict": None, "agree": None, "reason": None, "parts": None,
             **{k: v for k, v in res.to_dict().items() if k not in ("verdict", "agree", "reason")}}
        r["environment"]["cpu"] = _cpu()
        r["trajectory_summary"], r["per_step"] = summary(traj), per_step(traj)
        stage("test predictions")
        r["data"], r["class_names"] = report_data.data_summary(spec, data), list(data.class_names)
        r["test"] = test_split_predictions(spec, traj, impls, data)
        if slide:
            stage("slide's six flowers")
        r["slide"] = slide_flowers(spec, impls) if slide else None
        stage("figures")
        r = _jsonable(r)
        figs = figures.report_figures(r, ["loss.png", "errors.png", "confusion.png"])  # while the companion runs
        r["companion"] = None
        if job is not None:
            stage(f"companion run ({cspec.dtype})")
            try:
                comp = job.result()
                r["companion"] = _jsonable({"dtype": cspec.dtype, "verdict": comp.section.verdict,
                                            "agree": comp.section.verdict == "agree",
                                            "trajectory": asdict(comp.section), "summary": summary(comp),
                                            "per_step": per_step(comp)})
            except FloatingPointError as e:  # the other dtype diverged: nothing to compare, said so
                r["companion"] = {"dtype": cspec.dtype, "verdict": "not available", "agree": None,
                                  "error": f"training diverged: {e}"}
        stage("weights")
        files = _write_weights(out, spec, traj, impls)
        stage("replay of the schedule")
        r["replay"] = _jsonable(replay(spec, out, traj.schedule, data, cand, float(traj.allowance[-1])))
        stage("report")
        r["parts"] = {"forward": res.forward.verdict, "gradients": res.gradients.verdict,
                      "finite differences": res.finite_differences.verdict,
                      f"trajectory ({spec.dtype})": res.trajectory.verdict}
        if r["companion"] is not None:
            r["parts"][f"trajectory ({cspec.dtype} companion)"] = r["companion"]["verdict"]
        if r["slide"] is not None:
            r["parts"]["slide's six flowers"] = r["slide"]["verdict"]
        if r["replay"] is not None:
            r["parts"]["replay of the schedule"] = r["replay"]["verdict"]
        r["verdict"], r["reason"] = _verdict(res, r["parts"])
        r["agree"] = r["verdict"] == "agree"
        stage("divergence figure")
        figs.update(figures.report_figures(r, ["divergence.png"]))
        for name in FIGURES:
            atomic_write_bytes(out / name, figs[name])
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


def _write_weights(out: Path, spec: Spec, traj: Trajectory, impls: dict) -> dict:
    """The weights files; each one's metadata is one key, "description": a JSON object with "what", "config"
    and, for a role's file, "role" and "implementation" (one key, because safetensors writes several in a
    random order, and results.json records the files' sha256)."""
    config = _jsonable(asdict(spec))
    files = {"init.safetensors": (H.initial_weights(spec), "the shared initial weights", None)}
    for role in ROLES:
        res, name = getattr(traj, role).result, impls[role].name
        files[f"final-{role}.safetensors"] = (res.final, f"{name}'s ({role}) weights after the last step of "
                                                        "`schedule`", role)
        if res.restored is not None:
            files[f"restored-{role}.safetensors"] = (res.restored, f"{name}'s ({role}) best weights, restored "
                                                                  "by early stopping", role)
    for fname, (w, what, role) in files.items():
        meta = {"what": what, "config": config, **({} if role is None else {"role": role,
                                                                            "implementation": impls[role].name})}
        save_weights(out / fname, w, metadata={"description": json.dumps(meta, sort_keys=True)})
    return {fname: {"what": what, "sha256": _sha(out / fname)} for fname, (w, what, role) in files.items()}


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
    return jsonable(lists(x))


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
