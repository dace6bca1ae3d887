"""``manual`` as an implementation of the cross-check's protocol (compare.protocol): the NumPy
network and trainer of this package, driven through their public API."""
from __future__ import annotations

import numpy as np

from compare.protocol import Pass, TrainResult

from .mlp import MLP
from .train import train


class ManualImplementation:
    """Registered as ``manual`` (pyproject.toml entry points)."""

    def __init__(self, option: str | None = None):
        if option:
            raise ValueError(f"implementation 'manual' takes no option, got 'manual:{option}'")
        self.name = "manual"

    def info(self) -> dict:
        return {"implementation": "manual (NumPy, hand-written back-propagation)", "numpy": np.__version__}

    def unavailable(self, spec) -> dict:
        return {}

    def _net(self, spec, weights) -> MLP:
        return MLP.from_weights(weights, spec.activation, spec.output, spec.loss, gamma=spec.gamma)

    def forward_backward(self, spec, weights, X, y, masks) -> Pass:
        net = self._net(spec, weights)
        loss, grads = net.gradients(X, y, masks)
        return Pass(loss, list(net.z), list(net.a), list(net.delta), dict(grads))

    def forward_loss(self, spec, weights, X, y, masks) -> float:
        return self._net(spec, weights).loss(X, y, masks)

    def train(self, spec, weights, data, order, masks, grad_hook, on_step) -> TrainResult:
        net = self._net(spec, weights)
        last = {}

        def callback(step, net_, loss):
            last["w"] = net_.weights()
            on_step(step, last["w"], loss)

        h = train(net, data.X_train, data.y_train, epochs=spec.epochs, lr=spec.lr, optimizer=spec.optimizer,
                  momentum=spec.momentum, weight_decay=spec.weight_decay, betas=spec.betas, eps=spec.eps,
                  batch_size=spec.batch_size, order=order, dropout=spec.dropout, masks=masks,
                  X_val=data.X_val, y_val=data.y_val, patience=spec.patience, callback=callback,
                  grad_hook=grad_hook)
        final = last.get("w", {k: np.array(v) for k, v in weights.items()})
        return TrainResult(h.loss, h.train_accuracy, h.val_accuracy, h.epochs_run, h.best_epoch, h.stopped_early,
                           final, net.weights() if h.restored_best else None)

    def predict(self, spec, weights, X):
        net = self._net(spec, weights)
        return net.forward(X), net.predict(X)
