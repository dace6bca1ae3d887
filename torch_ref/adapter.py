"""``torch`` as an implementation of the cross-check's protocol (compare.protocol): the torch.nn
model and torch.optim loop of this package.  ``torch:cuda[:N]`` runs on a GPU with TF32 off."""
from __future__ import annotations

import re

import numpy as np
import torch

from compare.protocol import Pass, TrainResult

from .model import from_shared, loss_fn, state_dict_to_shared, weight_map
from .train import Probe, train


def _device(option: str | None) -> torch.device:
    option = option or "cpu"
    m = re.fullmatch(r"cpu|cuda(?::([0-9]+))?", option)
    if not m:
        raise ValueError(f"implementation 'torch:{option}': expected torch, torch:cpu, torch:cuda or torch:cuda:N")
    if option != "cpu":
        if not torch.cuda.is_available():
            raise ValueError(f"implementation 'torch:{option}': CUDA is not available on this machine "
                             "(devices: cpu)")
        n = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= n:
            raise ValueError(f"implementation 'torch:{option}': no such device; this machine has "
                             f"{', '.join(['cpu'] + [f'cuda:{i}' for i in range(n)])}")
    dev = torch.device(option)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # full float32 precision, as the other side computes
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    return dev


class TorchImplementation:
    """Registered as ``torch`` (pyproject.toml entry points); ``torch:cuda:0`` for a GPU."""

    def __init__(self, option: str | None = None):
        self.device = _device(option)
        self.name = "torch" if self.device.type == "cpu" else f"torch:{self.device}"

    def info(self) -> dict:
        info = {"implementation": "torch_ref (torch.nn, torch.optim)", "torch": torch.__version__,
                "device": str(self.device)}
        if self.device.type == "cuda":
            info["cuda_device"] = torch.cuda.get_device_name(self.device)
            info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
            info["allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        return info

    def unavailable(self, spec) -> dict:
        return {}

    def _model(self, spec, weights):
        return from_shared(weights, spec.activation, spec.output, spec.dropout, self.device, gamma=spec.gamma)

    def _t(self, a):
        a = np.asarray(a)
        return torch.as_tensor(a if a.flags.writeable else a.copy(), device=self.device)  # torch has no read-only tensors

    def forward_backward(self, spec, weights, X, y, masks) -> Pass:
        model = self._model(spec, weights)
        model.train()
        with Probe(model) as probe:
            probe.masks = None if masks is None else [self._t(m) for m in masks]
            logits = model(self._t(X))
            loss = loss_fn(spec.loss)(logits, model.output(logits), self._t(y))
            loss.backward()
        np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
        params = dict(model.named_parameters())
        grads = {k: np_(params[key].grad) for k, key in weight_map(len(model.sizes) - 1).items()}
        return Pass(loss.item(), [None] + [np_(z) for z in probe.z[1:]], [np.asarray(X)] + [np_(a) for a in probe.a[1:]],
                    [None] + [np_(d) for d in probe.delta[1:]], grads)

    def forward_loss(self, spec, weights, X, y, masks) -> float:
        model = self._model(spec, weights)
        model.train()
        with torch.no_grad(), Probe(model) as probe:
            probe.masks = None if masks is None else [self._t(m) for m in masks]
            logits = model(self._t(X))
            return loss_fn(spec.loss)(logits, model.output(logits), self._t(y)).item()

    def train(self, spec, weights, data, order, masks, grad_hook, on_step) -> TrainResult:
        model = self._model(spec, weights)
        last = {}

        def callback(step, model_, loss):
            last["w"] = state_dict_to_shared(model_)
            on_step(step, last["w"], loss)

        h = train(model, self._t(data.X_train), self._t(data.y_train), loss=spec.loss, epochs=spec.epochs,
                  lr=spec.lr, optimizer=spec.optimizer, momentum=spec.momentum, weight_decay=spec.weight_decay,
                  betas=spec.betas, eps=spec.eps, batch_size=spec.batch_size, X_val=self._t(data.X_val),
                  y_val=self._t(data.y_val), patience=spec.patience, order=order, masks=masks,
                  callback=callback, grad_hook=grad_hook)
        final = last.get("w", {k: np.array(v) for k, v in weights.items()})
        return TrainResult(h["loss"], h["train_accuracy"], h["val_accuracy"], h["epochs_run"], h["best_epoch"],
                           h["stopped_early"], final, state_dict_to_shared(model) if h["restored_best"] else None)

    def predict(self, spec, weights, X):
        model = self._model(spec, weights).eval()
        with torch.no_grad():
            z = model(self._t(X))
            return model.output(z).cpu().numpy(), z.argmax(dim=1).cpu().numpy()
