"""A user's port in one file: a small NumPy MLP written from scratch for this test, plugged into the
check as ``tests.ports.tiny_numpy:TinyNumpy`` with no change under compare/.  Sigmoid/tanh hidden
layers, softmax + cross-entropy, plain SGD (the lecture's setting); everything else it reports as
not available."""
import numpy as np

from compare.protocol import Pass, TrainResult

ACT = {"sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
       "tanh": (np.tanh, lambda a: 1 - a * a)}


class TinyNumpy:
    name = "tiny-numpy"

    def info(self):
        return {"implementation": "tests/ports/tiny_numpy.py"}

    def unavailable(self, spec):
        why = {}
        if spec.activation not in ACT or spec.loss != "cross_entropy" or spec.optimizer != "sgd" or spec.dropout \
                or spec.weight_decay or spec.patience:
            why["trajectory"] = why["forward"] = why["gradients"] = why["finite_differences"] = \
                "only sigmoid/tanh, softmax cross-entropy and plain SGD are written"
        return why

    def _pass(self, spec, w, X, y):
        L = len(w) // 2
        f, fp = ACT[spec.activation]
        z, a = [None], [X]
        for l in range(1, L + 1):
            z.append(a[-1] @ w[f"W{l}"].T + w[f"b{l}"])
            a.append(f(z[-1]) if l < L else z[-1])
        e = np.exp(z[L] - z[L].max(1, keepdims=True))
        a[L] = e / e.sum(1, keepdims=True)
        n = X.shape[0]
        Y = np.eye(a[L].shape[1], dtype=X.dtype)[y]
        loss = float(-np.mean(np.log(a[L][np.arange(n), y])))
        delta = [None] * (L + 1)
        delta[L] = (a[L] - Y) / n
        for l in range(L - 1, 0, -1):
            delta[l] = (delta[l + 1] @ w[f"W{l + 1}"]) * fp(a[l])
        grads = {}
        for l in range(1, L + 1):
            grads[f"W{l}"], grads[f"b{l}"] = delta[l].T @ a[l - 1], delta[l].sum(0)
        return Pass(loss, z, a, delta, grads)

    def forward_backward(self, spec, weights, X, y, masks):
        return self._pass(spec, {k: np.array(v) for k, v in weights.items()}, X, y)

    def train(self, spec, weights, data, order, masks, grad_hook, on_step):
        w = {k: np.array(v) for k, v in weights.items()}
        B, losses, acc_tr, acc_va, step = spec.batch_size or order.shape[1], [], [], [], 0
        for epoch in order:
            for i in range(0, len(epoch), B):
                idx = epoch[i:i + B]
                p = self._pass(spec, w, data.X_train[idx], data.y_train[idx])
                g = grad_hook(step, p.grads) if grad_hook else p.grads
                for k in w:
                    w[k] -= w[k].dtype.type(spec.lr) * g[k]
                losses.append(p.loss)
                on_step(step, {k: v.copy() for k, v in w.items()}, p.loss)
                step += 1
            acc_tr.append(float(np.mean(self.predict(spec, w, data.X_train)[1] == data.y_train)))
            acc_va.append(float(np.mean(self.predict(spec, w, data.X_val)[1] == data.y_val)))
        return TrainResult(losses, acc_tr, acc_va, len(order), None, False, w, None)

    def predict(self, spec, weights, X):
        p = self._pass(spec, weights, X, np.zeros(len(X), dtype=np.int64))
        return p.a[-1], p.z[-1].argmax(1)
