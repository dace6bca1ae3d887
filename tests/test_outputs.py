"""compare/report_dir.py and compare/outputs.py: the report folder is replaced whole or not at all, foreign folders are refused,
a SIGINT does not wait for the companion; and a property test of the command line's parsing and checks."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compare.figures
import compare.report
from compare.cli import main
from compare.report_dir import REPORT_FILES, ReportDir

FAST = ["--epochs", "2", "--no-slide", "--no-companion"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p)
                                         if p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def _no_plots(r, names):  # the figures' content is test_report.py's; here only the files matter (and time)
    return {n: b"\x89PNG\r\n\x1a\n" + n.encode() + json.dumps(r["config"]["seed"]).encode() for n in names}


@pytest.fixture(autouse=True)
def quick_figures(monkeypatch):
    monkeypatch.setattr(compare.figures, "report_figures", _no_plots)


@pytest.fixture(scope="module")
def old_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("old") / "rep"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(compare.figures, "report_figures", _no_plots)
        assert main(["report", "--out", str(out), *FAST, "--seed", "1"]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_report_writes_only_report_files(old_report):
    names = {p.name for p in old_report.iterdir()}
    assert names <= REPORT_FILES and {"results.json", "report.md", "init.safetensors"} <= names
    assert not [p for p in old_report.parent.iterdir() if p.name.startswith(".")]  # no build folder left


def test_an_interrupted_rerun_leaves_the_old_report_whole(old_report, tmp_path, monkeypatch, capsys):
    out = _copy(old_report, tmp_path / "rep")
    before = snapshot(out)

    def interrupted(*a, **k):  # after the figures and the weights were written
        raise KeyboardInterrupt

    monkeypatch.setattr(compare.report, "replay", interrupted)
    assert main(["report", "--out", str(out), *FAST, "--seed", "2"]) == 130
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # the build folder is gone too
    capsys.readouterr()


def test_a_rerun_replaces_the_report_whole(old_report, tmp_path, capsys):
    out = _copy(old_report, tmp_path / "rep")
    (out / "restored-torch.safetensors").write_bytes(b"stale")  # a previous report's file this one does not write
    out.chmod(0o700)  # a private report stays private
    assert main(["report", "--out", str(out), *FAST, "--seed", "2"]) == 0
    assert out.stat().st_mode & 0o777 == 0o700
    assert not (out / "restored-torch.safetensors").exists()
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 2
    assert (out / "init.safetensors").read_bytes() != (old_report / "init.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert f"written to {out}/" in capsys.readouterr().out


def test_a_folder_with_other_files_is_refused_naming_one_unless_force(old_report, tmp_path, capsys):
    out = _copy(old_report, tmp_path / "rep")
    (out / "notes.txt").write_text("mine")
    (out / "zz").mkdir()
    before = snapshot(out)
    assert main(["report", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r} holds 'notes.txt', which is not a file of a previous report" in err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before
    assert main(["report", "--out", str(out), *FAST, "--force", "--seed", "3"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "zz").is_dir()
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 3
    capsys.readouterr()


def test_report_into_the_current_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("report.md").write_text("someone else's")
    Path("results.json").write_text("{}")
    Path("setup.py").write_text("")
    for out in ("", "."):
        assert main(["report", "--out", out, *FAST]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "argument --out: must not be empty" in err[0] and "holds 'setup.py'" in err[1]
    assert Path("report.md").read_text() == "someone else's"


def test_a_dangling_symlink_as_out_says_what_is_wrong(tmp_path, capsys):
    link = tmp_path / "rep"
    link.symlink_to(tmp_path / "gone")
    assert main(["report", "--out", str(link), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(link)!r} is a symbolic link to {str(tmp_path / 'gone')!r}, which does not exist" in err
    assert "Errno" not in err


def test_a_symlink_to_a_report_folder_stays_a_symlink(old_report, tmp_path, capsys):
    real = _copy(old_report, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to("real")
    assert main(["report", "--out", str(link), *FAST, "--seed", "4"]) == 0
    assert link.is_symlink() and json.loads((real / "results.json").read_text())["config"]["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    capsys.readouterr()


def test_report_dir_without_the_exchange_falls_back_to_two_renames(tmp_path, monkeypatch):
    import errno

    import compare.report_dir as O

    def unsupported(a, b):
        raise OSError(errno.EINVAL, "no")

    monkeypatch.setattr(O, "_exchange", unsupported)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").write_text("old")
    d = ReportDir(tmp_path / "rep")
    (d.begin() / "report.md").write_text("new")
    d.commit()
    assert (tmp_path / "rep" / "report.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the companion is forked only with a second core")
def test_a_sigint_does_not_wait_for_the_companion(tmp_path, monkeypatch, capsys):
    import compare.harness as H

    def interrupted(*a, **k):
        time.sleep(0.3)  # the companion (1000 epochs in float32, seconds) is running now
        raise KeyboardInterrupt

    monkeypatch.setattr(H, "check", interrupted)
    t0 = time.perf_counter()
    assert main(["report", "--out", str(tmp_path / "rep"), "--no-slide"]) == 130
    assert time.perf_counter() - t0 < 2.0
    assert not mp.active_children() and not (tmp_path / "rep").exists()
    assert capsys.readouterr().err.strip() == "python -m compare: interrupted"


# ---- the command line's parsing and checks, driven by random option values ---------------------------
def _num(lo, hi):
    return st.one_of(st.integers(lo, hi).map(str), st.sampled_from(["", "-1", "1e3", "x", "nan", "inf",
                                                                    "99999999999999999999999", "0x10"]))


OPTIONS = {
    "--epochs": st.one_of(st.integers(0, 2).map(str), st.sampled_from(["-1", "1000000000", "99999999999999999999999",
                                                                        "", "two", "1.5"])),
    "--hidden": st.one_of(st.integers(1, 4).map(str), st.sampled_from(["0", "1000000000", "-2", ""])),
    "--seed": _num(0, 2**64 + 1),
    "--lr": st.one_of(st.sampled_from(["0.1", "0.2", "0", "-1", "nan", "inf", "1e308", "", "fast"])),
    "--batch-size": _num(0, 130),
    "--dropout": st.sampled_from(["0", "0.2", "1", "-0.1", "nan", ""]),
    "--early-stopping": _num(0, 3),
    "--momentum": st.sampled_from(["0", "0.9", "-1", "nan"]),
    "--activation": st.sampled_from(["sigmoid", "relu", "elu", "gelu", ""]),
    "--output": st.sampled_from(["softmax", "sigmoid", "identity", "tanh"]),
    "--loss": st.sampled_from(["cross_entropy", "mse", "l1", "hinge", "nll"]),
    "--optimizer": st.sampled_from(["sgd", "adam", "nesterov", "rmsprop"]),
    "--dtype": st.sampled_from(["float32", "float64", "float16"]),
    "--device": st.sampled_from(["cpu", "tpu", ""]),
    "--init": st.sampled_from(["torch", "xavier", "he", "zeros"]),
    "--weights": st.sampled_from(["", "/dev/zero", "/nonexistent/w.safetensors", "WEIGHTS", "FOLDER"]),
    "--json": st.sampled_from(["", "-", "/nonexistent/r.json", "out.json", "FOLDER", "/dev/null"]),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTIONS[k] for k in keys})))
def test_random_options_give_a_documented_status_one_line_and_no_stray_files(tmp_path_factory, options):
    import manual

    work = tmp_path_factory.mktemp("cli")
    os.mkdir(work / "FOLDER")
    manual.save_weights(work / "w.safetensors", manual.init_weights([4, 3, 3], seed=0))
    argv = ["check", "--epochs", "1"]
    for k, v in options.items():
        v = {"WEIGHTS": str(work / "w.safetensors"), "FOLDER": str(work / "FOLDER")}.get(v, v)
        if k == "--json" and v == "out.json":
            v = str(work / "out.json")
        argv.append(f"{k}={v}")
    before = snapshot(work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(cwd)
    assert code in (0, 1, 2, 3), (argv, code, err.getvalue())
    assert len(err.getvalue().strip().splitlines()) <= 1, (argv, err.getvalue())
    after = snapshot(work)
    named = f"--json={work / 'out.json'}" in argv
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= ({"out.json"} if named else set()), (argv, changed)
    if code == 0 and named:
        assert json.loads((work / "out.json").read_text())["agree"] is True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_report_into_a_folder_nothing_can_be_created_in_is_refused_before_the_run(capsys, monkeypatch):
    """`--out /proc/x` passed os.access (root may write anywhere, says access) and failed when the build
    folder was made: exit 4 with a raw errno.  A real probe refuses it up front."""
    import compare.harness

    monkeypatch.setattr(compare.harness, "check", lambda *a, **k: pytest.fail("the run started"))
    assert main(["report", "--out", "/proc/x", *FAST]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out '/proc/x' cannot be written" in err and "is not writable" in err
