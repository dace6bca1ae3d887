"""``sklearn`` as a partial implementation of the cross-check's protocol (compare.protocol):
scikit-learn's MLPClassifier loaded with the shared weights, driven through its public API only.

Available: ``predict`` (predict_proba, predict) and the trajectory of plain SGD, momentum and
Nesterov (partial_fit, solver='sgd', shuffle=False, learning_rate='constant') with logistic, tanh
or relu hidden layers and softmax + cross-entropy.  Everything else reads "not available" with the
reason (UNAVAILABLE, unavailable()).

Loading the shared weights (public fitted attributes only): one ``partial_fit`` on dummy rows (one per class),
with ``classes``, builds the fitted state (layers, classes_, out_activation_='softmax', ...); then
``coefs_[l-1] = W^l.T`` (sklearn's coefs_ are (n_{l-1}, n_l)) and ``intercepts_[l-1] = b^l``.
The dummy call also made an optimiser with velocities from its own step, so step 0 is
``fit(warm_start=True, max_iter=1)`` instead: fit makes a fresh SGDOptimizer (zero velocities)
and warm_start keeps the loaded weights; its warm-start check wants every class in y, so one row per
class is appended with sample_weight 0 (no share in the loss, the gradients or sw_sum = n_batch).
Steps 1.. are ``partial_fit`` with warm_start=False (one epoch over exactly that batch, the optimiser
kept; its class check then only wants y within classes_).  sample_weight in MLPClassifier.fit: >= 1.7.
"""
from __future__ import annotations

import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from compare.protocol import TrainResult

ACT = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu"}  # MLPClassifier also has "identity"
CLASSES = np.arange(3)
SK_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
NO_FORWARD = ("has no public z^l or hidden a^l: MLPClassifier's public API returns only a^L (predict_proba); "
              "the layers are computed inside the private _forward_pass")
UNAVAILABLE = {
    "forward": NO_FORWARD,
    "gradients": "exposes no gradient: MLPClassifier computes them only inside fit/partial_fit (private _backprop)",
    "finite_differences": "exposes no gradient of its own to check against central differences (private _backprop)",
    "noise": "cannot run the noise run: partial_fit exposes no gradient hook",
}


def _trajectory_reasons(spec) -> list[str]:
    why = [] if SK_VERSION >= (1, 7) else [f"needs scikit-learn >= 1.7 (MLPClassifier.fit's sample_weight), "
                                           f"found {sklearn.__version__}"]
    if spec.activation not in ACT:
        why.append(f"MLPClassifier's hidden activations are identity, logistic, tanh and relu: no {spec.activation}")
    if spec.output != "softmax" or spec.loss != "cross_entropy":
        why.append(f"MLPClassifier trains softmax + log-loss for 3 classes only, not output={spec.output!r} with "
                   f"loss={spec.loss!r}")
    if spec.optimizer == "adam":
        why.append("sklearn's AdamOptimizer steps -lr*sqrt(1-beta2^t)/(1-beta1^t) * m/(sqrt(v) + epsilon) on the "
                   "uncorrected moments, torch's Adam -lr*m_hat/(sqrt(v_hat) + eps), i.e. epsilon = "
                   "eps*sqrt(1-beta2^t) in sklearn's form: a different epsilon at every step, while "
                   "MLPClassifier's is fixed")
    if spec.optimizer in ("momentum", "nesterov") and spec.momentum > 1:
        why.append(f"MLPClassifier's momentum must be in [0, 1], got {spec.momentum}")
    if spec.weight_decay:
        why.append("MLPClassifier's L2 term alpha adds alpha*W/n_batch to the coefs_ gradients only, never to the "
                   "intercepts (and 0.5*alpha*||W||^2/n_batch to the loss it records), while weight_decay adds "
                   "weight_decay*W and weight_decay*b to the gradients and nothing to the loss: no alpha maps it")
    if spec.dropout:
        why.append("MLPClassifier has no dropout")
    if spec.patience is not None:
        why.append("MLPClassifier's early stopping holds out its own validation_fraction of the data it is fitted "
                   "on, stops on a tol improvement of that score (n_iter_no_change) and is refused by partial_fit: "
                   "not the protocol's rule (the given validation split, the best epoch's weights restored)")
    return why


class SklearnImplementation:
    """Registered as ``sklearn`` (pyproject.toml entry points)."""

    def __init__(self, option: str | None = None):
        if option:
            raise ValueError(f"implementation 'sklearn' takes no option, got 'sklearn:{option}'")
        self.name = "sklearn"

    def info(self) -> dict:
        return {"implementation": "sklearn_ref (sklearn.neural_network.MLPClassifier, public API)",
                "sklearn": sklearn.__version__, "numpy": np.__version__}

    def unavailable(self, spec) -> dict:
        why = dict(UNAVAILABLE)
        traj = _trajectory_reasons(spec)
        if traj:
            why["trajectory"] = "; ".join(traj)
        return why

    def _classifier(self, spec, weights, X) -> MLPClassifier:
        traj = _trajectory_reasons(spec)
        if spec.activation not in ACT or spec.output != "softmax":
            raise ValueError(f"implementation 'sklearn': {'; '.join(traj)}")
        mu = spec.momentum if spec.optimizer in ("momentum", "nesterov") else 0.0
        clf = MLPClassifier(hidden_layer_sizes=spec.hidden, activation=ACT[spec.activation], solver="sgd", alpha=0.0,
                            learning_rate="constant", learning_rate_init=spec.lr, momentum=mu,
                            nesterovs_momentum=spec.optimizer == "nesterov", shuffle=False, warm_start=True,
                            max_iter=1, random_state=0)
        clf.partial_fit(np.repeat(X[:1], 3, 0), CLASSES, classes=CLASSES)  # the fitted state, in X's dtype
        clf.coefs_ = [np.array(weights[f"W{l}"], dtype=X.dtype).T.copy() for l in range(1, len(weights) // 2 + 1)]
        clf.intercepts_ = [np.array(weights[f"b{l}"], dtype=X.dtype) for l in range(1, len(weights) // 2 + 1)]
        return clf

    def forward_backward(self, spec, weights, X, y, masks):
        raise NotImplementedError(f"implementation 'sklearn' {NO_FORWARD}")

    def train(self, spec, weights, data, order, masks, grad_hook, on_step) -> TrainResult:
        if grad_hook is not None or masks is not None or _trajectory_reasons(spec):
            raise NotImplementedError(f"implementation 'sklearn': {self.unavailable(spec).get('trajectory', '')} "
                                      f"{'' if grad_hook is None else UNAVAILABLE['noise']}".strip())
        X, y = data.X_train, data.y_train
        clf = self._classifier(spec, weights, X)
        B, losses, acc_tr, acc_va, step = spec.batch_size or order.shape[1], [], [], [], 0
        final = {k: np.array(v) for k, v in weights.items()}
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", ConvergenceWarning)  # fit(max_iter=1): one step, by design
            for epoch in order:
                for i in range(0, len(epoch), B):
                    idx = epoch[i:i + B]
                    try:
                        if step == 0:  # fresh optimiser; one zero-weight row per class for the warm-start check
                            clf.set_params(batch_size=len(idx) + len(CLASSES))
                            sw = np.r_[np.ones(len(idx)), np.zeros(len(CLASSES))].astype(X.dtype)
                            clf.fit(np.r_[X[idx], np.repeat(X[idx[:1]], len(CLASSES), 0)], np.r_[y[idx], CLASSES],
                                    sample_weight=sw)
                        else:
                            clf.set_params(batch_size=len(idx), warm_start=False)  # partial_fit: no class check
                            clf.partial_fit(X[idx], y[idx])
                    except ValueError as e:
                        if "non-finite" not in str(e):  # "Solver produced non-finite parameter weights"
                            raise
                        raise FloatingPointError(f"sklearn: step {step}: {e}") from None
                    loss = float(clf.loss_)  # the batch's loss before this step's update
                    if not np.isfinite(loss):
                        raise FloatingPointError(f"sklearn: the loss became {loss} at step {step}")
                    final = {n: v for l in range(len(clf.coefs_)) for n, v in
                             ((f"W{l + 1}", clf.coefs_[l].T.copy()), (f"b{l + 1}", clf.intercepts_[l].copy()))}
                    losses.append(loss)
                    on_step(step, final, loss)
                    step += 1
                acc_tr.append(float(np.mean(clf.predict(X) == y)))
                acc_va.append(float(np.mean(clf.predict(data.X_val) == data.y_val)))
        return TrainResult(losses, acc_tr, acc_va, len(order), None, False, final, None)

    def predict(self, spec, weights, X):
        dt = np.asarray(next(iter(weights.values()))).dtype
        X = np.asarray(X, dtype=dt)
        clf = self._classifier(spec, weights, X)
        return clf.predict_proba(X), clf.predict(X)
