"""`python -m compare report`: the files, their content, the replay of `schedule`, the HTML, the exit codes."""
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

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--epochs", "50"]  # the lecture's example, shortened: the report's content, not its training
FILES = ["report.md", "report.html", "results.json", "loss.png", "errors.png", "divergence.png", "confusion.png",
         "init.safetensors", "final-manual.safetensors", "final-torch.safetensors"]


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


def test_results_json_holds_agree_config_and_the_schedule(report):
    r = _results(report)
    assert r["agree"] is True and all(r["parts"].values())
    assert r["config"]["epochs"] == 50 and r["config"]["optimizer"] == "sgd" and r["config"]["dtype"] == "float64"
    assert len(r["schedule"]) == r["trajectory_summary"]["steps"] == 50  # full batch: one step per epoch
    assert all(rows == list(range(120)) for rows in r["schedule"])
    assert len(r["per_step"]["loss_manual"]) == 50 and len(r["per_step"]["param_divergence"]) == 51
    assert r["companion"]["dtype"] == "float32" and r["companion"]["agree"] is True
    assert r["slide"]["agree"] is True and r["slide"]["misprints"] == [[0, 0]]
    assert r["test"]["manual"]["pred"] == r["test"]["torch"]["pred"]
    assert r["replay"]["manual_bit_identical"] is True


def test_replaying_the_schedule_with_plain_sgd_reproduces_both_final_weight_files(report):
    r = _results(report)
    c = r["config"]
    data = iris_split("float64")
    net = manual.MLP.from_weights(manual.load_weights(report / "init.safetensors"), c["activation"], c["output"],
                                  c["loss"])
    for rows in r["schedule"]:
        _, g = net.gradients(data.X_train[rows], data.y_train[rows])
        for name, p in zip(net.names, net.params):
            p -= c["lr"] * g[name]
    final_m = manual.load_weights(report / "final-manual.safetensors")
    final_t = manual.load_weights(report / "final-torch.safetensors")
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
    assert "AGREE" in md.splitlines()[0] and "misprint" in md
    assert f"manual {r['test']['manual']['correct']}/30, torch {r['test']['torch']['correct']}/30" in md
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
    assert capsys.readouterr().out.startswith("AGREE")
    for name in ("results.json", "init.safetensors", "final-manual.safetensors", "final-torch.safetensors"):
        assert (report / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_float32_early_stopping_report_records_the_restored_weights(tmp_path, capsys):
    args = ["--dtype", "float32", "--optimizer", "adam", "--lr", "0.05", "--batch-size", "40", "--epochs", "40",
            "--early-stopping", "3", "--no-slide"]
    assert main(["report", "--out", str(tmp_path), *args]) == 0
    r = _results(tmp_path)
    assert r["companion"]["dtype"] == "float64" and r["replay"] is None and r["slide"] is None
    s = r["trajectory_summary"]
    assert s["stopped_early"] == {"manual": True, "torch": True} and s["restored_best"]["manual"]
    assert len(r["schedule"]) == s["steps"] == 3 * s["epochs_run"]["manual"]
    restored = manual.load_weights(tmp_path / "restored-manual.safetensors")
    assert restored["W1"].dtype == np.float32
    assert r["test"]["manual"]["weights"] == "restored"
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
