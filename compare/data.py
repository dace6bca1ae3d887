"""The lecture's iris example: the 40/10 split and the slide's printed weights and predictions.

No torch here (the CLI's --help and manual's demo must stay fast).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("setosa", "versicolor", "virginica")
FEATURE_NAMES = ("sepal length", "sepal width", "petal length", "petal width")


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_rows: np.ndarray   # rows of load_iris() in the training split, canonical order
    test_rows: np.ndarray
    mean: np.ndarray | None = None  # standardisation fitted on the training split, if used
    std: np.ndarray | None = None


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


def iris_split(dtype="float64", standardize: bool = False) -> Split:
    """scikit-learn's iris: train = the first 40 rows of each class (rows 0-39, 50-89, 100-139) in
    that order, test = the last 10 of each.  Raw features as in the slides unless ``standardize``,
    which subtracts the training mean and divides by the training standard deviation."""
    X, y = load_iris_arrays()
    starts = [int(np.flatnonzero(y == c)[0]) for c in range(3)]
    assert all((y[s:s + 50] == c).all() for c, s in enumerate(starts)), "load_iris() order changed"
    train_rows = np.concatenate([np.arange(s, s + 40) for s in starts])
    test_rows = np.concatenate([np.arange(s + 40, s + 50) for s in starts])
    Xtr, Xte = X[train_rows], X[test_rows]
    mean = std = None
    if standardize:
        mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    dt = np.dtype(dtype)
    return Split(Xtr.astype(dt), y[train_rows], Xte.astype(dt), y[test_rows], train_rows, test_rows, mean, std)


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
