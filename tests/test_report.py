"""`python -m compare report`: the files (named by role), their content, the verdict, the replay of `schedule`,
the HTML, the exit codes."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import manual
from compare import tolerances as tol
from compare.cli import main
from compare.data import iris_split
from manual.adapter import ManualImplementation

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--epochs", "50"]  # the lecture's example, shortened: the report's content, not its training
FILES = ["report.md", "report.html", "results.json", "loss.png", "errors.png", "divergence.png", "confusion.png",
         "init.safetensors", "final-candidate.safetensors", "final-reference.safetensors"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "new" / "dir"  # created if missing, parents too
    assert main(["report", "--out", str(out), *ARGS]) == 0
    return out


def _results(out: Path) -> dict:
    def no_constants(c):
        raise AssertionError(f"results.json holds the non-JSON constant {c}")
    return json.loads((out / "results.json").read_text(), parse_constant=no_constants)


def test_every_file_is_written_and_no_temp_file_is_left(report):
    for name in FILES:
        assert (report / name).stat().st_size > 0, name
    assert not [p.name for p in report.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    for name in FILES[3:7]:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return json.loads(f.metadata()["description"])


def test_results_json_holds_the_verdict_roles_config_and_the_schedule(report):
    r = _results(report)
    assert r["verdict"] == "agree" and r["agree"] is True and r["reason"] is None
    assert set(r["parts"].values()) == {"agree"}
    assert (r["candidate"], r["reference"]) == ("manual", "torch")
    assert r["config"]["epochs"] == 50 and r["config"]["optimizer"] == "sgd" and r["config"]["dtype"] == "float64"
    assert r["steps"] == r["judged_steps"] == r["trajectory"]["steps"] == r["trajectory"]["judged_steps"] == 50
    assert r["trajectory"]["verdict"] == "agree"
    assert len(r["schedule"]) == r["trajectory_summary"]["steps"] == 50  # full batch: one step per epoch
    assert all(rows == list(range(120)) for rows in r["schedule"])
    ps = r["per_step"]
    assert len(ps["loss_candidate"]) == len(ps["loss_reference"]) == 50
    for k in ("divergence", "envelope", "allowance", "judged", "noise_candidate", "noise_reference"):
        assert len(ps[k]) == 51, k
    assert all(j is True for j in ps["judged"])
    assert all(d <= a for d, a in zip(ps["divergence"], ps["allowance"], strict=False))
    assert r["companion"]["dtype"] == "float32" and r["companion"]["verdict"] == "agree"
    assert r["companion"]["agree"] is True and len(r["companion"]["per_step"]["judged"]) == 51
    assert r["slide"]["verdict"] == "agree" and r["slide"]["misprints"] == [[0, 0]]
    assert r["test"]["candidate"]["pred"] == r["test"]["reference"]["pred"]
    assert r["replay"]["candidate"]["bit_identical"] is True and r["replay"]["verdict"] == "agree"
    # each weights file names its implementation in its metadata; the file names say the role
    assert _metadata(report / "final-candidate.safetensors")["implementation"] == "manual"
    assert _metadata(report / "final-reference.safetensors")["implementation"] == "torch"
    assert "implementation" not in _metadata(report / "init.safetensors")
    assert _metadata(report / "final-candidate.safetensors")["role"] == "candidate"
    assert _metadata(report / "init.safetensors")["config"] == r["config"]


def test_replaying_the_schedule_with_plain_sgd_reproduces_both_final_weight_files(report):
    r = _results(report)
    c = r["config"]
    data = iris_split("float64")
    net = manual.MLP.from_weights(manual.load_weights(report / "init.safetensors"), c["activation"], c["output"],
                                  c["loss"])
    for rows in r["schedule"]:
        _, g = net.gradients(data.X_train[rows], data.y_train[rows])
        for name, p in zip(net.names, net.params, strict=False):
            p -= c["lr"] * g[name]
    final_m = manual.load_weights(report / "final-candidate.safetensors")  # manual, the candidate
    final_t = manual.load_weights(report / "final-reference.safetensors")  # torch, the reference
    assert set(final_m) == set(final_t) == {"W1", "b1", "W2", "b2"}
    for k, v in net.weights().items():
        assert v.dtype == final_m[k].dtype == np.float64
        assert np.array_equal(v, final_m[k]), f"{k}: replay is not bit-identical to final-manual"
        assert tol.rel_error(v, final_t[k])[1] <= tol.FLOAT64_RTOL, k
    assert not np.array_equal(net.weights()["W1"], manual.load_weights(report / "init.safetensors")["W1"])


def test_markdown_and_html_show_the_figures_and_the_run(report):
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    r = _results(report)
    for fig in ("loss.png", "errors.png", "divergence.png", "confusion.png"):
        assert f"]({fig})" in md
    assert md.splitlines()[0] == "# manual (candidate) vs torch (reference) on iris: AGREE, judged 50 of 50 steps"
    assert "misprint" in md and "**Verdict:** every compared quantity" in md
    assert "| layers | 4-6-3 " in md and "| inputs | raw iris features, as the slides |" in md
    assert ("| data | iris: the first 80 % of each class's rows in the data set's order, rounded down, train; the rest "
            "test: 120 rows train, 30 rows test (40 train / 10 test per class) |") in md
    assert "| classes | 3: setosa, versicolor, virginica |" in md and "left out here" not in md
    assert (f"manual (candidate) {r['test']['candidate']['correct']}/30, torch (reference) "
            f"{r['test']['reference']['correct']}/30") in md
    assert '<h1 class="agree">' in html
    # self-contained: the four figures embedded as data: URLs, nothing loaded from elsewhere
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4
    assert {base64.b64decode(i) for i in images} == {(report / f).read_bytes() for f in FILES[3:7]}
    assert not re.search(r'(src|href)="(?!data:)', html)


def test_an_out_path_that_is_a_file_exits_2_with_one_line(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("not a folder")
    assert main(["report", "--out", str(f), *ARGS]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(f) in err and "Traceback" not in err
    assert f.read_text() == "not a folder"


def test_same_seed_gives_an_identical_results_json(report, tmp_path, monkeypatch, capsys):
    # this run computes the float32 companion in this process (the fixture's forked it): the same bytes either way
    monkeypatch.setenv("COMPARE_REPORT_NO_FORK", "1")
    assert main(["report", "--out", str(tmp_path), *ARGS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AGREE: manual (candidate) vs torch (reference) on iris, judged 50 of 50 steps"), out
    for name in ("results.json", "init.safetensors", "final-candidate.safetensors", "final-reference.safetensors"):
        assert (report / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_float32_early_stopping_report_records_the_restored_weights(tmp_path, capsys):
    args = ["--dtype", "float32", "--optimizer", "adam", "--lr", "0.05", "--batch-size", "40", "--epochs", "40",
            "--early-stopping", "3", "--no-slide"]
    assert main(["report", "--out", str(tmp_path), *args]) == 0
    r = _results(tmp_path)
    assert r["companion"]["dtype"] == "float64" and r["replay"] is None and r["slide"] is None
    s = r["trajectory_summary"]
    assert s["stopped_early"] == {"candidate": True, "reference": True} and s["restored_best"]["candidate"]
    assert len(r["schedule"]) == s["steps"] == 3 * s["epochs_run"]["candidate"]
    restored = manual.load_weights(tmp_path / "restored-candidate.safetensors")
    assert restored["W1"].dtype == np.float32
    assert _metadata(tmp_path / "restored-reference.safetensors")["implementation"] == "torch"
    assert r["test"]["candidate"]["weights"] == "restored"
    md = (tmp_path / "report.md").read_text()
    assert "test accuracy below is optimistic" in md and "not replayed" in md
    capsys.readouterr()


def test_the_html_renders_with_its_images_in_headless_chromium(report, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); scripts/screenshot_report.sh")
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(["sh", str(ROOT / "scripts" / "screenshot_report.sh"), str(report / "report.html"), str(shot),
                    "1000,2400"], check=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.shape[:2] == (2400, 1000)
    # the error bars of errors.png are drawn in matplotlib's blue (31, 119, 180): only a rendered image has it
    blue = np.all(np.abs(px - [31, 119, 180]) <= 12, axis=-1).sum()
    assert blue > 2000, f"only {blue} pixels of the figures' blue: the embedded images did not render"


def test_swapped_roles_name_each_implementation_where_it_means_it(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path), "--candidate", "torch", "--reference", "manual", "--epochs", "5",
                 "--no-companion"]) == 0
    r = _results(tmp_path)
    assert (r["candidate"], r["reference"], r["verdict"]) == ("torch", "manual", "agree")
    assert _metadata(tmp_path / "final-candidate.safetensors")["implementation"] == "torch"
    assert _metadata(tmp_path / "final-reference.safetensors")["implementation"] == "manual"
    assert not list(tmp_path.glob("*-torch.*")) and not list(tmp_path.glob("*-manual.*"))
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# torch (candidate) vs manual (reference) on iris: AGREE, judged 5 of 5 steps")
    assert "torch (candidate) " in md and "manual (reference) " in md
    # the replay goes through the candidate's forward_backward (torch's): judged, bit identity reported either way
    assert r["replay"]["verdict"] == "agree" and isinstance(r["replay"]["candidate"]["bit_identical"], bool)
    assert capsys.readouterr().out.startswith("AGREE: torch (candidate) vs manual (reference) on iris, judged 5 of 5")


def test_an_inconclusive_report_says_so_in_its_title_and_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tol, "ENVELOPE_LIMIT", 0.0)  # no step can be judged: nothing to tell a bug from chance by
    assert main(["report", "--out", str(tmp_path), "--epochs", "4", "--no-companion", "--no-slide"]) == 3
    r = _results(tmp_path)
    assert r["verdict"] == "inconclusive" and r["agree"] is False and (r["steps"], r["judged_steps"]) == (4, 0)
    assert r["per_step"]["judged"] == [True, False, False, False, False]  # step 0: the shared initial weights
    assert r["trajectory"]["verdict"] == "inconclusive" and "judged 0 of 4 steps" in r["reason"]
    assert r["replay"]["verdict"] == "inconclusive" and r["replay"]["judged"] is False
    md = (tmp_path / "report.md").read_text()
    assert md.splitlines()[0].endswith(": INCONCLUSIVE, judged 0 of 4 steps")
    assert f"**Why:** {r['reason']}." in md
    assert '<h1 class="inconclusive">' in (tmp_path / "report.html").read_text()
    out = capsys.readouterr().out
    assert out.startswith("INCONCLUSIVE: manual (candidate) vs torch (reference) on iris, judged 0 of 4 steps")


class OffGradient(ManualImplementation):
    """manual with dC/db2 one percent off in its single passes (its training is manual's own)."""

    def __init__(self):
        super().__init__()
        self.name = "tests.test_report:off_gradient"

    def forward_backward(self, spec, weights, X, y, masks):
        p = super().forward_backward(spec, weights, X, y, masks)
        p.grads["b2"] = p.grads["b2"] * 1.01
        return p


def off_gradient():  # a factory: the registry takes a class with forward_backward for an instance
    return OffGradient()


def test_a_disagreeing_candidate_gives_a_disagree_report_and_exit_1(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path), "--candidate", "tests.test_report:off_gradient", "--epochs", "3",
                 "--no-companion", "--no-slide"]) == 1
    r = _results(tmp_path)
    assert r["verdict"] == "disagree" and r["agree"] is False and r["parts"]["gradients"] == "disagree"
    assert r["reason"].startswith("gradients disagrees: db2")
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# tests.test_report:off_gradient (candidate) vs torch (reference) on iris: DISAGREE")
    assert "disagreement in gradients" in md and '<h1 class="disagree">' in (tmp_path / "report.html").read_text()
    assert capsys.readouterr().out.startswith("DISAGREE: tests.test_report:off_gradient (candidate)")


def _md_sections(md: str) -> dict:
    """report.md's "## " sections by heading (the text before the first one under "")."""
    out, head = {"": []}, ""
    for line in md.splitlines():
        if line.startswith("## "):
            head = line[3:]
            out[head] = []
        out[head].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def test_a_wine_report_names_wine_its_classes_and_its_split(tmp_path, capsys):
    assert main(["report", "--dataset", "wine", "--epochs", "3", "--hidden", "8", "--out", str(tmp_path)]) == 0
    r = _results(tmp_path)
    assert r["config"]["dataset"] == "wine" and r["config"]["data_file"] is None
    classes = ["class_0", "class_1", "class_2"]  # load_wine().target_names
    assert r["class_names"] == r["data"]["class_names"] == classes
    d = r["data"]
    assert (d["name"], d["source"], d["n_features"], d["n_train"], d["n_test"]) == ("wine", "dataset", 13, 141, 37)
    assert r["slide"] is None and "slide's six flowers" not in r["parts"]
    n = r["data"]["n_test"]
    assert len(r["test"]["y"]) == len(r["test"]["candidate"]["pred"]) == n
    assert all(len(rows) == 141 for rows in r["schedule"])
    md = (tmp_path / "report.md").read_text()
    assert md.splitlines()[0] == "# manual (candidate) vs torch (reference) on wine: AGREE, judged 3 of 3 steps"
    assert "<title>manual (candidate) vs torch (reference) on wine: AGREE" in (tmp_path / "report.html").read_text()
    assert "| layers | 13-8-3 " in md and "| classes | 3: class_0, class_1, class_2 |" in md
    assert ("| data | wine: the first 80 % of each class's rows in the data set's order, rounded down, train; the rest "
            "test: 141 rows train, 37 rows test (per class: 38–56 train, 10–15 test) |") in md
    assert f"manual (candidate) {r['test']['candidate']['correct']}/{n}, torch (reference)" in md
    assert "| # | wine row | true |" in md and "| class_0 |" in md
    assert not [s for s in ("setosa", "flowers (", "/30", "120 rows", "120 training") if s in md]  # no iris facts
    sections = _md_sections(md)
    assert "Left out" in sections["The slide's six flowers"]
    assert [k for k, v in sections.items() if "iris" in v] == ["The slide's six flowers"]  # iris is named there only
    assert capsys.readouterr().out.startswith("AGREE: manual (candidate) vs torch (reference) on wine, judged 3 of 3")


def test_a_long_test_split_is_tabled_in_part_and_says_where_the_rest_is(tmp_path, capsys):
    assert main(["report", "--dataset", "breast_cancer", "--epochs", "2", "--hidden", "4", "--standardize",
                 "--no-companion", "--out", str(tmp_path)]) == 0
    r = _results(tmp_path)
    n = r["data"]["n_test"]
    assert n == len(r["test"]["rows"]) > 40 and r["class_names"] == ["malignant", "benign"]
    table = _md_sections((tmp_path / "report.md").read_text())["Test accuracy and predictions"]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 30 and rows[0].startswith(f"| 0 | {r['test']['rows'][0]} | ")
    assert f"The first 30 of {n} test rows; {n - 30} left out here" in table and "results.json holds every row" in table
    capsys.readouterr()


def test_the_companion_is_not_forked_from_an_implementation_that_cannot_fork():
    from compare import Spec
    from compare.registry import load
    from compare.report import _Companion

    job = _Companion(load("jax", "candidate"), load("torch", "reference"), Spec(epochs=1, dtype="float32"))
    assert job.proc is None  # computed in this process on result()
    assert job.result().section.verdict == "agree"
