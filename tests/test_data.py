"""--dataset iris|digits|wine|breast_cancer (the split rule) and --data FILE.npz (validated, bounded)."""
import json
import pickle

import numpy as np
import pytest

from compare.cli import main
from compare.data import DATASETS, dataset_split, iris_split, load_split, split_rows
from compare.spec import Spec

FAST = ["--epochs", "5"]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---- the split rule ----------------------------------------------------------------------------------
# class sizes of scikit-learn's bundled copies, and the rule: floor(4 n_c / 5) of each class train
CLASS_SIZES = {"iris": [50, 50, 50], "digits": [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
               "wine": [59, 71, 48], "breast_cancer": [212, 357]}
SHAPES = {"iris": (4, 3, 120, 30), "digits": (64, 10, 1433, 364), "wine": (13, 3, 141, 37),
          "breast_cancer": (30, 2, 454, 115)}


@pytest.mark.parametrize("name", DATASETS)
def test_each_dataset_splits_the_first_80_percent_of_each_class_rounded_down(name):
    s = dataset_split(name, standardize=True)
    d, K, n_train, n_test = SHAPES[name]
    assert (s.name, s.n_features, s.n_classes) == (name, d, K)
    assert len(s.class_names) == K and len(s.feature_names) == d
    assert s.X_train.shape == (n_train, d) and s.X_test.shape == (n_test, d)
    assert np.bincount(s.y_train).tolist() == [4 * n // 5 for n in CLASS_SIZES[name]]
    assert np.bincount(s.y_test).tolist() == [n - 4 * n // 5 for n in CLASS_SIZES[name]]
    # the first rows of each class, in the data set's order; train and test partition the rows
    assert (np.diff(s.train_rows) > 0).all() and (np.diff(s.test_rows) > 0).all()
    assert sorted([*s.train_rows, *s.test_rows]) == list(range(sum(CLASS_SIZES[name])))
    y = np.concatenate([s.y_train, s.y_test])[np.argsort(np.concatenate([s.train_rows, s.test_rows]))]
    for c in range(K):
        rows = np.flatnonzero(y == c)
        assert s.train_rows[s.y_train == c].tolist() == rows[:4 * rows.size // 5].tolist()
    assert np.isfinite(s.X_train).all() and np.allclose(s.X_train.mean(axis=0), 0)  # digits' constant pixels too
    assert Spec(dataset=name).sizes == [d, 6, K] and Spec(dataset=name).n_train == n_train


def test_iris_keeps_exactly_40_10_per_class_and_its_fast_path():
    s = dataset_split("iris")
    assert np.array_equal(s.X_train, iris_split().X_train)
    assert s.train_rows.tolist() == [*range(0, 40), *range(50, 90), *range(100, 140)]
    assert split_rows(np.repeat([0, 1, 2], 50))[0].tolist() == s.train_rows.tolist()
    assert Spec().sizes == [4, 6, 3] and Spec().n_train == 120


def test_batch_size_is_validated_against_the_data_sets_training_rows(capsys):
    Spec(dataset="wine", batch_size=141)
    code, out, err = run(["check", "--dataset", "wine", "--batch-size", "142"], capsys)
    assert code == 2 and "batch_size must be in [1, 141] (the wine training split), got 142" in err


def test_digits_adam_minibatch_agrees(capsys):
    code, out, err = run(["check", "--dataset", "digits", "--hidden", "32", "--optimizer", "adam", "--lr", "0.005",
                          "--batch-size", "32", "--epochs", "2", "--standardize"], capsys)
    assert code == 0, out + err
    assert "AGREE: manual (candidate) vs torch (reference), judged 90 of 90 training steps (float64)" in out


# ---- --data FILE.npz -----------------------------------------------------------------------------------
def iris_arrays():
    s = iris_split()
    return {"X_train": s.X_train, "y_train": s.y_train, "X_test": s.X_test, "y_test": s.y_test}


def test_iris_written_to_npz_gives_the_same_numbers_as_the_dataset(tmp_path, capsys):
    path = tmp_path / "iris.npz"
    np.savez(path, **iris_arrays())
    results = []
    for data in (["--dataset", "iris"], ["--data", str(path)]):
        out_json = tmp_path / f"r{len(results)}.json"
        code, out, err = run(["check", *FAST, "--batch-size", "30", "--standardize", *data, "--json", str(out_json)],
                             capsys)
        assert code == 0, out + err
        results.append(json.loads(out_json.read_text()))
    a, b = results
    assert b["config"]["dataset"] == "npz" and b["config"]["data_file"] == str(path)
    for section in ("forward", "gradients", "finite_differences", "trajectory"):
        rel = [[(c["tensor"], c["rel"], c["max_abs"]) for c in r[section]["checks"]] for r in results]
        assert rel[0] == rel[1] and rel[0], section
    assert a["trajectory"]["judged_steps"] == b["trajectory"]["judged_steps"] == 20
    spec = Spec(data_file=str(path), standardize=True)
    assert spec.sizes == [4, 6, 3] and spec.n_train == 120 and spec.data_name == "iris.npz"
    assert np.array_equal(load_split(spec).X_train, iris_split(standardize=True).X_train)


def _good():
    return iris_arrays()


def _with(**changes):
    a = _good()
    a.update(changes)
    return {k: v for k, v in a.items() if v is not None}


BAD_NPZ = {  # name: (arrays to np.savez, or bytes for the file, message)
    "missing key": (_with(y_test=None), "missing array y_test; expected X_train, y_train, X_test, y_test"),
    "object array": (_with(y_train=np.array([0, 1, 2] * 40, dtype=object)), "y_train is an object array"),
    "X 1-D": (_with(X_train=np.zeros(120)), "X_train has 1 dimension (shape (120,)); expected 2"),
    "y 2-D": (_with(y_test=np.zeros((30, 1), np.int64)), "y_test has 2 dimensions (shape (30, 1)); expected 1"),
    "dtypes differ": (_with(X_test=iris_split("float32").X_test), "X_train is float64 and X_test is float32"),
    "integer features": (_with(X_train=np.ones((120, 4), np.int64), X_test=np.ones((30, 4), np.int64)),
                         "X_train has dtype int64; expected float32 or float64"),
    "float16 features": (_with(X_train=np.ones((120, 4), np.float16), X_test=np.ones((30, 4), np.float16)),
                         "X_train has dtype float16; expected float32 or float64"),
    "NaN": (_with(X_test=np.where(np.arange(120).reshape(30, 4) == 9, np.nan, 1.0)),
            "X_test has 1 non-finite value (first at row 2, column 1: nan)"),
    "Inf": (_with(X_train=np.full((120, 4), np.inf)), "X_train has 480 non-finite values"),
    "float labels": (_with(y_train=np.repeat([0.0, 1.0, 2.0], 40)), "y_train has dtype float64; expected integer"),
    "label gap": (_with(y_train=np.repeat([0, 1, 3], 40), y_test=np.repeat([0, 1, 3], 10)),
                  "y_train has labels 0..3 with a gap: no row of class 2"),
    "negative label": (_with(y_train=np.repeat([-1, 0, 1], 40)), "y_train has a negative label -1"),
    "test label unknown": (_with(y_test=np.repeat([0, 1, 5], 10)), "y_test has labels in [0, 5]; y_train's"),
    "label count": (_with(y_train=np.repeat([0, 1, 2], 39)), "y_train has 117 labels and X_train 120 rows"),
    "feature count": (_with(X_test=np.ones((30, 5))), "X_train has 4 features and X_test 5; expected the same"),
    "single class": (_with(y_train=np.zeros(120, np.int64), y_test=np.zeros(30, np.int64)), "a single class"),
    "a pickle": (pickle.dumps(iris_arrays()), "a pickle, refused"),
    "a .npy": (None, "a single .npy array, not an .npz archive"),
    "not a zip": (b"X_train,y_train\n1,2\n", "not an .npz archive"),
    "truncated": ("truncated", "a corrupt or truncated .npz archive"),
    "corrupt member": ("corrupt", "a corrupt .npz archive"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_a_malformed_npz_is_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    content, message = BAD_NPZ[case]
    path = tmp_path / "bad.npz"
    if isinstance(content, dict):
        with open(path, "wb") as f:
            np.savez(f, **content)  # (np.savez would pickle the object array; np.load must refuse it)
    elif content is None:
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif content == "truncated":
        np.savez_compressed(tmp_path / "good.npz", **_good())
        path.write_bytes((tmp_path / "good.npz").read_bytes()[:-200])
    elif content == "corrupt":
        np.savez_compressed(tmp_path / "good.npz", **_good())
        b = bytearray((tmp_path / "good.npz").read_bytes())
        b[200:1200] = bytes(1000)
        path.write_bytes(bytes(b))
    else:
        path.write_bytes(content)
    code, out, err = run(["check", *FAST, "--data", str(path)], capsys)
    assert code == 2, out + err
    assert message in err and f"--data '{path}'" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_pickle_inside_is_refused_without_being_executed(tmp_path, capsys, monkeypatch):
    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "bad.npz", **_with(X_train=np.array([Exploit()], dtype=object)))
    code, out, err = run(["check", *FAST, "--data", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "X_train is an object array (a pickle inside), refused" in err
    assert not (tmp_path / "pwned").exists()


def test_data_files_are_read_bounded(tmp_path, capsys, monkeypatch):
    import compare.npz

    code, out, err = run(["check", *FAST, "--data", str(tmp_path)], capsys)
    assert code == 2 and "not a regular file" in err
    code, out, err = run(["check", *FAST, "--data", str(tmp_path / "none.npz")], capsys)
    assert code == 2 and "cannot read it" in err
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **_good(), extra=np.random.default_rng(0).random(10**4))
    monkeypatch.setattr(compare.npz, "data_max_bytes", lambda: 10_000)
    code, out, err = run(["check", *FAST, "--data", str(path)], capsys)
    assert code == 2 and "bytes, more than the 10,000 bytes allowed" in err, err
    np.savez_compressed(path, X_train=np.zeros((3000, 4)), **{k: v for k, v in _good().items() if k != "X_train"})
    code, out, err = run(["check", *FAST, "--data", str(path)], capsys)  # small on disk, large unpacked
    assert code == 2 and "its arrays unpack to" in err, err


def test_data_and_dataset_are_exclusive(tmp_path, capsys):
    path = tmp_path / "iris.npz"
    np.savez(path, **_good())
    for command in (["check"], ["report", "--out", str(tmp_path / "r")]):
        code, out, err = run([*command, *FAST, "--dataset", "wine", "--data", str(path)], capsys)
        assert code == 2 and "not allowed with argument" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="are exclusive"):
        Spec(dataset="wine", data_file=str(path))


def test_user_data_with_names_and_float32(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, X_train=rng.normal(size=(20, 3)).astype(np.float32), y_train=np.arange(20) % 2,
             X_test=rng.normal(size=(4, 3)).astype(np.float32), y_test=np.array([0, 1, 1, 0], np.uint8),
             class_names=np.array(["no", "yes"]), feature_names=np.array(["a", "b", "c"]))
    spec = Spec(data_file=str(path), dtype="float32", standardize=True)
    s = load_split(spec)
    assert spec.sizes == [3, 6, 2] and spec.n_train == 20 and s.name == "mine.npz"
    assert s.class_names == ("no", "yes") and s.feature_names == ("a", "b", "c")
    assert s.X_train.dtype == np.float32 and s.y_test.dtype == np.int64
