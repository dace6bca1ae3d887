"""The data of a check: scikit-learn's bundled data sets (iris, digits, wine, breast_cancer) under one
stated split rule, or a user's own arrays from an .npz file; and the lecture's iris example (the slide's
printed weights and predictions).

The split rule (``class_split``): for each class c, in the data set's own row order, the first
floor(4 n_c / 5) rows of that class (80 %, rounded down) are training rows and the rest test rows.
Both lists keep the data set's row order.  Iris (50 per class, classes in blocks of 50) gets exactly
40 / 10 per class: rows 0-39, 50-89, 100-139 train, the last 10 of each class test.

``--standardize`` subtracts the training mean and divides by the training standard deviation, both
fitted on the training split only; a feature constant on the training split (digits' border pixels)
is only centred (divided by 1, as scikit-learn's StandardScaler does).

No torch here (the CLI's --help and manual's demo must stay fast), and no scikit-learn import for
iris (it costs ~1.7 s per process): the other data sets import it lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CLASS_NAMES = ("setosa", "versicolor", "virginica")
FEATURE_NAMES = ("sepal length", "sepal width", "petal length", "petal width")
DATASETS = ("iris", "digits", "wine", "breast_cancer")  # --dataset; all shipped inside scikit-learn
NPZ = "npz"                   # Spec.dataset of a run on a user's --data FILE.npz
IRIS_SIZES = (4, 3, 120)      # n_features, n_classes, training rows of iris under the rule


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_rows: np.ndarray   # rows of the data set in the training split, in its order
    test_rows: np.ndarray
    mean: np.ndarray | None = None  # standardisation fitted on the training split, if used
    std: np.ndarray | None = None
    name: str = "iris"                          # a DATASETS name, or the .npz file's name
    class_names: tuple[str, ...] = CLASS_NAMES
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load_iris_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``load_iris()``'s data (150, 4) float64 and target (150,) int64, read from the very file it
    reads (sklearn/datasets/data/iris.csv) without importing scikit-learn, whose import costs ~1.7 s
    per process (scipy.stats); tests/test_manual.py checks the arrays equal ``load_iris()``'s."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # locates the package without executing it
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "iris.csv" if spec else None
    if path is None or not path.is_file():  # an unusual install: let scikit-learn find its copy
        from sklearn.datasets import load_iris

        iris = load_iris()
        return iris.data, iris.target.astype(np.int64)
    with path.open(encoding="utf-8") as f:
        n, d = (int(v) for v in f.readline().split(",")[:2])  # header: 150,4,setosa,versicolor,virginica
        table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape != (n, d + 1):
        raise ValueError(f"{path} holds a table of shape {table.shape}; its header says ({n}, {d + 1})")
    return table[:, :d], table[:, d].astype(np.int64)


def split_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule: per class, the first floor(4 n_c / 5) of its rows (data set order) train, the rest test;
    both returned in the data set's row order."""
    y = np.asarray(y)
    train = np.concatenate([rows[:(4 * rows.size) // 5] for rows in (np.flatnonzero(y == c) for c in np.unique(y))])
    train = np.sort(train)
    test = np.setdiff1d(np.arange(y.shape[0]), train)  # sorted
    return train, test


def standardized(Xtr, Xte, standardize: bool):
    if not standardize:
        return Xtr, Xte, None, None
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a feature constant on the training split is only centred
    return (Xtr - mean) / std, (Xte - mean) / std, mean, std


def cast_features(X: np.ndarray, dtype, what: str) -> np.ndarray:
    dt = np.dtype(dtype)
    with np.errstate(over="ignore"):
        out = X.astype(dt)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} has values beyond {dt}'s range (largest {np.finfo(dt).max:.3g}); "
                         f"use --dtype float64 or --standardize")
    return out


def class_split(X, y, dtype="float64", standardize: bool = False, name: str = "data",
                class_names=None, feature_names=None) -> Split:
    """``X`` (n, d), ``y`` (n,) labels 0..K-1 split by the rule (``split_rows``), optionally standardised."""
    X, y = np.asarray(X, np.float64), np.asarray(y).astype(np.int64)
    train_rows, test_rows = split_rows(y)
    Xtr, Xte, mean, std = standardized(X[train_rows], X[test_rows], standardize)
    K = int(y.max()) + 1
    return Split(cast_features(Xtr, dtype, f"{name} X_train"), y[train_rows], cast_features(Xte, dtype, f"{name} X_test"),
                 y[test_rows], train_rows, test_rows, mean, std, name,
                 tuple(str(c) for c in class_names) if class_names is not None else tuple(map(str, range(K))),
                 tuple(str(f) for f in feature_names) if feature_names is not None
                 else tuple(f"x{j}" for j in range(X.shape[1])))


def iris_split(dtype="float64", standardize: bool = False) -> Split:
    """scikit-learn's iris: train = the first 40 rows of each class (rows 0-39, 50-89, 100-139) in
    that order, test = the last 10 of each (the rule of ``split_rows`` on iris).  Raw features as in
    the slides unless ``standardize``, which subtracts the training mean and divides by the training
    standard deviation."""
    X, y = load_iris_arrays()
    starts = [int(np.flatnonzero(y == c)[0]) for c in range(3)]
    assert all((y[s:s + 50] == c).all() for c, s in enumerate(starts)), "load_iris() order changed"
    s = class_split(X, y, dtype, standardize, "iris", CLASS_NAMES, FEATURE_NAMES)
    assert s.train_rows.tolist() == [r for st in starts for r in range(st, st + 40)], "iris split is not 40/10"
    return s


@lru_cache(maxsize=None)
def _sklearn_dataset(name: str):
    """(X, y, class_names, feature_names) of scikit-learn's bundled ``load_<name>()``, read-only."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not known; expected one of {list(DATASETS)}")
    import sklearn.datasets

    b = getattr(sklearn.datasets, f"load_{name}")()
    X, y = np.asarray(b.data, np.float64), np.asarray(b.target).astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, tuple(str(c) for c in b.target_names), tuple(str(f) for f in b.feature_names)


def dataset_split(name: str = "iris", dtype="float64", standardize: bool = False) -> Split:
    """One of DATASETS split by the rule; iris on its fast path (no scikit-learn import)."""
    if name == "iris":
        return iris_split(dtype, standardize)
    X, y, classes, features = _sklearn_dataset(name)
    return class_split(X, y, dtype, standardize, name, classes, features)


def load_split(spec) -> Split:
    """The split of ``spec`` (its --data file, else its --dataset) in its dtype, standardised as it says."""
    if getattr(spec, "data_file", None):
        from .npz import npz_split

        return npz_split(spec.data_file, spec.dtype, spec.standardize)
    return dataset_split(getattr(spec, "dataset", "iris"), spec.dtype, spec.standardize)


def data_sizes(dataset: str = "iris", data_file: str | None = None) -> tuple[int, int, int]:
    """(n_features, n_classes, training rows) of a data set or .npz, without standardising or casting;
    iris without reading anything."""
    if data_file:
        from .npz import read_npz

        a = read_npz(data_file)
        return int(a["X_train"].shape[1]), int(a["y_train"].max()) + 1, int(a["X_train"].shape[0])
    if dataset == "iris":
        return IRIS_SIZES
    X, y, classes, _ = _sklearn_dataset(dataset)
    return int(X.shape[1]), len(classes), int(split_rows(y)[0].size)


def check_fits(spec, split: Split) -> None:
    """Raise ValueError when ``split`` is not the shape ``spec`` was sized for."""
    want = (spec.sizes[0], spec.sizes[-1])
    got = (split.X_train.shape[1], getattr(split, "n_classes", want[1]))
    if want != got:
        raise ValueError(f"the data ({getattr(split, 'name', 'given')}: {got[0]} features, {got[1]} classes) does not fit the spec "
                         f"({want[0]} inputs, {want[1]} classes)")


# The slide's trained weights, printed in the row-vector layout H = sigmoid(x W1 + b1) with W1 of
# shape (4, 6): the TRANSPOSE of this project's layout W^l (n_l, n_{l-1}).  slide_weights()
# transposes them on loading.
_SLIDE_W1 = [[-0.92051142, -0.26299602, -1.31182587, -0.01975909, -0.59453297, -1.11046791],
             [-0.28832591, -1.20107734, -0.9193843, 2.20059323, -1.76573455, -0.85953856],
             [-2.33936191, 2.61448216, -0.70324481, -2.55568218, 2.42951894, -1.61432779],
             [-2.24077463, 2.89018154, 0.49342883, -2.72368193, 4.8323493, 1.31086338]]
_SLIDE_b1 = [-2.00212002, -2.24461389, -0.26081288, 0.61751789, -11.42080021, -0.88119394]
_SLIDE_W2 = [[-0.47563726, -0.80865479, -1.70860052],
             [-4.02558851, 4.80955172, 1.79265082],
             [0.18003793, 0.4045147, 0.40952846],
             [8.4482317, -6.87298441, -4.0685277],
             [-2.96541858, -5.34733152, 11.1489048],
             [0.08154635, 0.21151544, -0.45402744]]
_SLIDE_b2 = [0.90756476, 2.25174689, -2.58430076]

SLIDE_FLOWERS = np.array([[5, 3.5, 1.3, 0.3], [4.5, 2.3, 1.3, 0.3], [5.5, 2.6, 4.4, 1.2],
                          [6.1, 3, 4.6, 1.4], [6.7, 3.1, 5.6, 2.4], [6.9, 3.1, 5.1, 2.3]])
SLIDE_LABELS = np.array([0, 0, 1, 1, 2, 2])
# Printed on the slide (float32 print).  Entry [0, 0] was printed as 9.9998450e-01: recomputed in
# float64 it is 0.999998414, so the slide dropped a digit (see LECTURE.md).
SLIDE_PROBS = np.array([[9.9998450e-01, 1.42261445e-06, 1.62947060e-07],
                        [9.99949336e-01, 4.81077950e-05, 2.52183918e-06],
                        [4.37718809e-05, 9.98948872e-01, 1.00730266e-03],
                        [4.63805227e-05, 9.98428643e-01, 1.52486726e-03],
                        [8.70701982e-08, 2.18645262e-04, 9.99781311e-01],
                        [2.09509579e-07, 6.10101502e-04, 9.99389648e-01]])
SLIDE_MISPRINTS = ((0, 0),)  # entries of SLIDE_PROBS known to be misprinted


def slide_weights(dtype="float64") -> dict[str, np.ndarray]:
    """The slide's printed 4-6-3 weights in this project's layout (W1 (6, 4), W2 (3, 6))."""
    dt = np.dtype(dtype)
    return {"W1": np.array(_SLIDE_W1, dtype=dt).T.copy(), "b1": np.array(_SLIDE_b1, dtype=dt),
            "W2": np.array(_SLIDE_W2, dtype=dt).T.copy(), "b2": np.array(_SLIDE_b2, dtype=dt)}
