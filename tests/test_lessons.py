"""python -m compare lessons: the files, the agreement per lesson, a planted bug, bad input, the HTML in chromium.

Most tests share one run of the reduced configuration (--quick); the full one is `make lessons`."""
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compare.cli import main
from compare.lessons import LESSONS
from manual.adapter import ManualImplementation

ROOT = Path(__file__).resolve().parent.parent


class SigmoidPrimeBug(ManualImplementation):
    """manual with sigma' written as sigma(1 + sigma) instead of sigma(1 - sigma), loaded as
    --candidate tests.test_lessons:SIGMOID_BUG."""

    def __init__(self):
        super().__init__()
        self.name = "manual-sigmoid-bug"

    def _net(self, spec, weights):
        net = super()._net(spec, weights)
        if net.sigma.name == "sigmoid":
            net.sigma = net.sigma._replace(fprime=lambda z, fz, out=None: fz * (1.0 + fz))
        return net


SIGMOID_BUG = SigmoidPrimeBug()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lessons")
    rc = main(["lessons", "--out", str(out), "--quick"])
    return rc, out


def test_quick_run_writes_every_file_and_every_lesson_agrees(quick, capsys):
    rc, out = quick
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["lessons.html", "lessons.md", "lessons.json"]
                           + [f"lesson-{i}-{k}.png" for i, k in enumerate(LESSONS, 1)])  # no temp file left
    doc = json.loads((out / "lessons.json").read_text())
    assert doc["kind"] == "backprop-crosscheck lessons" and doc["agree"] is True
    assert [les["key"] for les in doc["lessons"]] == list(LESSONS)
    for les in doc["lessons"]:
        a = les["agreement"]
        assert a["ok"] and a["max_rel"] <= a["allowed"] == 1e-10 and a["series"] > 0, les["key"]
        assert set(les["data"]) >= {"shared", "candidate", "reference"}
        assert (out / les["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_lessons_show_what_the_lecture_claims(quick):
    doc = {les["key"]: les["data"] for les in json.loads((quick[1] / "lessons.json").read_text())["lessons"]}
    act = doc["activations"]["reference"]
    assert str(act["relu"]["fprime_at_0"]) == "0.0" and act["leaky_relu"]["fprime_at_0"] == 0.01 and act["elu"]["fprime_at_0"] == 1
    assert max(act["sigmoid"]["fprime"]) == pytest.approx(0.25)
    van = doc["vanishing"]["reference"]       # deepest net at init: sigmoid's first layer far below ReLU's
    assert van["sigmoid"]["init"][-1][0] < 1e-2 * van["relu"]["init"][-1][0]
    sym = doc["symmetry"]
    assert max(sym["reference"]["equal"]["spread"]) <= 1e-15 and max(sym["candidate"]["equal"]["spread"]) <= 1e-15
    assert sym["reference"]["random"]["spread"][-1] > 0.1
    lr = doc["lr"]["reference"]
    assert lr["far too large"]["diverged"] and not lr["about right"]["diverged"]
    assert doc["lr"]["candidate"]["far too large"]["diverged_after_steps"] == lr["far too large"]["diverged_after_steps"]
    es = doc["overfitting"]["reference"]["early stopping"]
    assert es["epochs_run"] == len(es["train_error"])


def test_the_pages_embed_and_link_every_figure(quick):
    out = quick[1]
    html = (out / "lessons.html").read_text()
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(imgs) == len(LESSONS) and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    assert "class='bad'" not in html and html.count("Agreement: manual vs torch") == len(LESSONS)
    md = (out / "lessons.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file()


def test_a_planted_sigmoid_derivative_bug_is_a_disagreement_in_lessons_1_and_2(tmp_path, capsys):
    rc = main(["lessons", "--out", str(tmp_path), "--quick", "--only", "activations,vanishing",
               "--candidate", "tests.test_lessons:SIGMOID_BUG"])
    assert rc == 1
    doc = json.loads((tmp_path / "lessons.json").read_text())
    assert doc["agree"] is False and doc["candidate"] == "manual-sigmoid-bug"
    for les in doc["lessons"]:
        assert not les["agreement"]["ok"] and les["agreement"]["max_rel"] > 0.1, les["key"]
        assert les["agreement"]["where"].startswith("sigmoid")
    assert len(re.findall(r"<section id='[a-z]+' class='bad'>", (tmp_path / "lessons.html").read_text())) == 2
    assert "DISAGREE: activations" in capsys.readouterr().out


def _one_line_exit_2(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for e in expected:
        assert e in err
    return err


def test_an_unknown_lesson_name_lists_the_valid_ones(tmp_path, capsys):
    _one_line_exit_2(capsys, ["lessons", "--out", str(tmp_path / "x"), "--only", "vanishing,lr,nope"],
                     "'nope'", "valid names: " + ", ".join(LESSONS))
    assert not (tmp_path / "x").exists()


def test_out_rules_a_file_and_a_foreign_non_empty_folder_are_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_exit_2(capsys, ["lessons", "--out", str(f), "--only", "activations"], "not a directory")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep me")
    _one_line_exit_2(capsys, ["lessons", "--out", str(tmp_path / "d"), "--only", "activations"],
                     "not a previous lessons output")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["mine.txt"]


def test_out_rules_an_empty_path_and_a_dangling_link_are_refused(tmp_path, capsys):
    """An empty --out meant the current folder; a dangling link gave '[Errno 17] File exists'."""
    _one_line_exit_2(capsys, ["lessons", "--out", "", "--only", "activations"], "--out must not be empty")
    (tmp_path / "dl").symlink_to(tmp_path / "nowhere")
    _one_line_exit_2(capsys, ["lessons", "--out", str(tmp_path / "dl"), "--only", "activations"],
                     "is a symbolic link to")


def test_a_previous_lessons_output_is_overwritten_and_an_unknown_implementation_exits_2(tmp_path, capsys):
    argv = ["lessons", "--out", str(tmp_path), "--only", "activations", "--quick"]
    assert main(argv) == 0 and main(argv) == 0
    _one_line_exit_2(capsys, ["lessons", "--out", str(tmp_path), "--reference", "nosuchimpl"], "--reference")
    _one_line_exit_2(capsys, ["lessons", "--out", str(tmp_path), "--bogus"], "unrecognized arguments")


def test_the_html_renders_with_its_figures_in_headless_chromium(quick, tmp_path):
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("/usr/bin/chromium is not installed (Debian: apt-get install chromium); the HTML is not rendered")
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(["sh", str(ROOT / "scripts" / "screenshot_report.sh"), str(quick[1] / "lessons.html"), str(shot),
                    "1000,2400"], check=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.shape[:2] == (2400, 1000)
    assert px.std() > 10, "the screenshot is blank"
    # saturated pixels other than the page's own greens (section border #2a7, agreement text #264): only the
    # rendered figures bring them (measured: ~24,000 in the top 1000x2400 of a full run)
    saturated = (px.max(axis=-1) - px.min(axis=-1)) > 60
    page = np.all(np.abs(px - [0x22, 0xAA, 0x77]) <= 30, axis=-1) | np.all(np.abs(px - [0x22, 0x66, 0x44]) <= 40, axis=-1)
    colour = int((saturated & ~page).sum())
    assert colour > 5000, f"only {colour} coloured pixels besides the page's own: the embedded figures did not render"


def test_an_implementation_that_cannot_fork_runs_the_lessons_in_this_process(monkeypatch):
    """JAX declares fork_safe = False: forked workers deadlocked in XLA once the parent had run it (the
    README's `lessons --candidate jax` hung).  Then the lessons run here; with manual and torch they fork."""
    from compare.lessons import runner
    from compare.registry import load

    class Forked(Exception):
        pass

    def pool(*a, **k):
        raise Forked

    monkeypatch.setattr(runner, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(runner, "warm_up", lambda cand, ref: None)
    monkeypatch.setattr(runner, "run_lesson", lambda key, cand, ref, cfg, names: ({"key": key}, b""))
    lessons, _ = runner.run_all(["activations", "lr"], load("jax", "candidate"), load("torch", "reference"), None,
                                ("jax", "torch"))
    assert [les["key"] for les in lessons] == ["activations", "lr"]
    if sys.platform == "linux" and (os.cpu_count() or 1) > 1 and not os.environ.get("COMPARE_LESSONS_NO_FORK"):
        with pytest.raises(Forked):
            runner.run_all(["activations", "lr"], load("manual", "candidate"), load("torch", "reference"), None,
                           ("manual", "torch"))
