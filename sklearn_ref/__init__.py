"""scikit-learn's MLPClassifier as a partial implementation of the cross-check's protocol
(sklearn_ref/adapter.py): predictions and SGD/momentum/Nesterov trajectories, nothing private."""
from .adapter import SklearnImplementation

__all__ = ["SklearnImplementation"]
