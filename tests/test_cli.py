"""python -m compare check: exit 0 agree, 1 disagree, 2 bad usage (one line on stderr, no traceback)."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

import manual
from compare.cli import main

FAST = ["--epochs", "5"]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_agrees_and_writes_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    code, out, err = run(["check", *FAST, "--batch-size", "30", "--optimizer", "nesterov", "--json", str(path)], capsys)
    assert code == 0, out + err
    assert "AGREE: 20 training steps compared (float64, device cpu)" in out
    data = json.loads(path.read_text())
    assert data["agree"] is True and data["steps"] == 20
    assert {"forward", "gradients", "finite_differences", "trajectory", "config", "environment"} <= data.keys()
    assert data["config"]["optimizer"] == "nesterov" and data["config"]["batch_size"] == 30
    assert [c["tensor"] for c in data["gradients"]["checks"]] == ["delta2", "dW2", "db2", "delta1", "dW1", "db1"]


def test_check_reports_a_disagreement_with_exit_1(monkeypatch, capsys):
    class SumNotMean(manual.MLP):  # the classic: the batch sum where the loss is a mean
        def backprop(self, Y, y, masks=None):
            return [g * Y.shape[0] for g in super().backprop(Y, y, masks)]

    monkeypatch.setattr(manual, "MLP", SumNotMean)
    code, out, err = run(["check", *FAST], capsys)
    assert code == 1
    assert "DISAGREE" in out and "first disagreement: layer 2, dW2" in out


BAD_USAGE = {
    "unknown activation": (["--activation", "gelu"], "invalid choice: 'gelu'"),
    "cross-entropy without softmax": (["--output", "sigmoid"], "needs output='softmax'"),
    "lr zero": (["--lr", "0"], "lr must be a finite number > 0"),
    "lr not a number": (["--lr", "fast"], "invalid float value: 'fast'"),
    "hidden 0": (["--hidden", "0"], "hidden layer size must be >= 1"),
    "dropout 1": (["--dropout", "1"], "dropout must be a probability in [0, 1)"),
    "batch too large": (["--batch-size", "500"], "batch_size must be in [1, 120]"),
    "negative epochs": (["--epochs", "-3"], "epochs must be >= 0"),
    "early stopping 0": (["--early-stopping", "0"], "patience (early stopping) must be >= 1"),
    "bad device": (["--device", "tpu"], "device='tpu' is not supported"),
    "missing weights file": (["--weights", "/nonexistent/w.safetensors"], "cannot read weights file"),
}


@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_bad_usage_is_one_line_and_exit_2(case, capsys):
    args, message = BAD_USAGE[case]
    code, out, err = run(["check", *FAST, *args], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_subcommand_is_bad_usage(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and "required" in err


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_a_pickle_is_refused_without_being_executed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(pickle.dumps({"W1": _Exploit()}))
    code, out, err = run(["check", *FAST, "--weights", str(bad)], capsys)
    assert code == 2 and "pickle" in err and str(bad) in err
    assert not (tmp_path / "pwned").exists()


def test_corrupt_and_truncated_weights_files_name_the_file(tmp_path, capsys):
    good = manual.save_weights(tmp_path / "good.safetensors", manual.init_weights([4, 6, 3], seed=0))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-10])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    for path in (truncated, garbage):
        code, out, err = run(["check", *FAST, "--weights", str(path)], capsys)
        assert code == 2 and f"{str(path)!r} is not a valid safetensors file" in err, err


def test_weights_file_is_the_initial_state(tmp_path, capsys):
    w = manual.init_weights([4, 3, 3], "xavier", seed=9)
    path = manual.save_weights(tmp_path / "w.safetensors", w)
    code, out, err = run(["check", *FAST, "--hidden", "3", "--weights", str(path), "--json", str(tmp_path / "r.json")],
                         capsys)
    assert code == 0, err
    code, out, err = run(["check", *FAST, "--weights", str(path)], capsys)  # default --hidden 6 does not fit
    assert code == 2 and "has layer sizes [4, 3, 3]; the spec needs [4, 6, 3]" in err


def test_the_real_command_line_and_the_same_json_across_processes(tmp_path, capsys):
    """One real process: the exit code travels, bad usage prints one line and no traceback.  And every
    random choice (init, order, dropout masks, the noise run) derives from the seed: the child process
    and this one write byte-identical JSON; another seed does not."""
    args = ["check", "--epochs", "3", "--batch-size", "7", "--dropout", "0.2", "--seed", "11", "--json"]
    child, here, other = tmp_path / "child.json", tmp_path / "here.json", tmp_path / "other.json"
    ok = subprocess.run([sys.executable, "-m", "compare", *args, str(child)], capture_output=True, text=True)
    assert ok.returncode == 0 and "AGREE" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "compare", "check", "--loss", "nll"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert main([*args, str(here)]) == 0
    assert child.read_bytes() == here.read_bytes()
    assert main([*args[:-2], "12", "--json", str(other)]) == 0
    capsys.readouterr()
    assert json.loads(other.read_bytes())["trajectory"] != json.loads(here.read_bytes())["trajectory"]


def test_a_weights_file_in_any_tensor_order_gives_the_same_run(tmp_path):
    """safetensors files list tensors in their own order; the harness must not depend on it."""
    from compare.data import iris_split
    from compare.harness import initial_weights, trajectory_section
    from compare.spec import Spec

    w = manual.init_weights([4, 3, 3], "xavier", seed=9)
    path = manual.save_weights(tmp_path / "w.safetensors", {k: w[k] for k in ["b2", "W2", "b1", "W1"]})
    spec = Spec(hidden=(3,), epochs=4, weights_file=str(path))
    init = initial_weights(spec)
    assert list(init) == ["W1", "b1", "W2", "b2"] and all(np.array_equal(init[k], w[k]) for k in w)
    data = iris_split()
    traj = trajectory_section(spec, init, data)
    net = manual.MLP.from_weights(w)
    manual.train(net, data.X_train, data.y_train, epochs=4, lr=spec.lr)
    assert all(np.array_equal(traj.manual.final[k], v) for k, v in net.weights().items())
