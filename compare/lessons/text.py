"""Each lesson's paragraph: the lecture's claim and what this run measured (numbers from the data)."""
from __future__ import annotations

import numpy as np


def activations(d):
    r = d["reference"]
    return ("The lecture's table pairs every activation f with its derivative f', which back-propagation multiplies "
            "in: delta^l = (W^{l+1})^T delta^{l+1} * f'(z^l).  Here a 4-1-3 probe network passes each x through one "
            "hidden unit (W^1 = 1, b^1 = 0), so a^1 = f(x), and f'(x) is read back as delta^1 / (W^2)^T delta^2, "
            "row by row.  Sigmoid's derivative peaks at 1/4 (measured "
            f"{np.max(r['sigmoid']['fprime']):.4f}), tanh's at 1; at the kinks both implementations follow torch's "
            f"convention: ReLU'(0) = {r['relu']['fprime_at_0']:g}, LeakyReLU'(0) = {r['leaky_relu']['fprime_at_0']:g}, "
            f"ELU'(0) = {r['elu']['fprime_at_0']:g}.")


def vanishing(d):
    sh, r = d["shared"], d["reference"]
    k = sh["depths"][-1]
    first = {a: r[a]["init"][-1][0] / r[a]["init"][-1][-1] for a in sh["activations"]}
    return ("Back-propagation multiplies one factor f'(z^l) (W^l)^T per layer, and sigmoid's f' is at most 1/4, so "
            "the gradient of the early layers shrinks geometrically with depth (the vanishing gradient); tanh "
            "(f'(0) = 1) and ReLU (f' = 1 where active) do not have that factor.  In the deepest net here "
            f"({k} hidden layers of 8, at initialisation), ||dC/dW^1|| / ||dC/dW^L|| is {first['sigmoid']:.1e} for "
            f"sigmoid, {first['tanh']:.1e} for tanh and {first['relu']:.1e} for ReLU; after {sh['epochs']} epochs of "
            "GD the picture is the same.  Log axes: a straight falling line is geometric decay.")


def symmetry(d):
    r = d["reference"]
    eq, rnd = np.max(r["equal"]["spread"]), np.max(r["random"]["spread"][-1])
    ce = np.max(d["candidate"]["equal"]["spread"])
    return ("If all weights start equal, every hidden unit of a layer computes the same function, receives the same "
            "delta and the same update, and stays a copy of the others: the network behaves as if it had one "
            f"hidden unit.  With every weight {d['shared']['equal_value']} the six hidden units never separate: the "
            f"largest difference between two of them over {d['shared']['epochs']} GD steps is {eq:.1e} in the "
            f"reference and {ce:.1e} in the candidate (rounding at most); from random initial weights they end "
            f"{rnd:.2f} apart.  Training accuracy: equal {r['equal']['train_accuracy']:.1%}, random "
            f"{r['random']['train_accuracy']:.1%}.  Random initialisation breaks the symmetry.")


def learning_rate(d):
    parts = []
    for label, lr in d["shared"]["learning_rates"].items():
        r = d["reference"][label]
        if r["diverged"]:
            parts.append(f"eta = {lr:g} diverges (FloatingPointError after {r['diverged_after_steps']} steps)")
        else:
            parts.append(f"eta = {lr:g} ends at loss {r['loss'][-1]:.4f}")
    return ("The step theta <- theta - eta dC/dtheta only decreases C when eta is small enough for the local slope "
            "to hold over the step: too small and training crawls, too large and it overshoots the valley, "
            "oscillates or diverges.  Gradient descent on raw iris with the quadratic cost (identity output, mse): "
            + "; ".join(parts) + ".  The diverging run is drawn up to its last finite loss; both implementations "
            "raise FloatingPointError at the same step.")


def batch_size(d):
    r = d["reference"]
    last = {k: v["loss_per_epoch"][-1] for k, v in r.items()}
    return ("Gradient descent uses the whole training set for one step, SGD one sample, mini-batch a few; the "
            "lecture's point is that per pass over the data (epoch) the cheaper, noisier steps get further, while per "
            "update the full gradient is the better direction.  Same initial weights, same eta = "
            f"{d['shared']['lr']:g} and the same sample orders on both sides; after {d['shared']['epochs']} epochs "
            "the training loss is " + ", ".join(f"{v:.3f} ({k})" for k, v in last.items()) + ".")


def overfitting(d):
    r = d["reference"]
    es = r["early stopping"]
    fin = ", ".join(f"{k} {v['final_test_error']:.1%}" for k, v in r.items())
    stop = (f"early stopping fired at epoch {es['epochs_run']} and restored epoch {es['best_epoch']}"
            if es["stopped_early"] else "early stopping did not fire within the run")
    return ("A network with far more parameters than training samples can fit them exactly (training error 0) "
            "while its error on unseen data stays higher or grows: overfitting.  The remedies of the lecture: "
            "an L2 penalty on the weights (weight decay), dropout (here with masks drawn once by compare and given "
            "to both implementations) and early stopping on a validation set (the lecture's SGD algorithm: shuffle, "
            f"batches, stop when the validation error stops falling); {stop}.  Test error at the end (restored "
            f"weights for early stopping): {fin}.  Iris is easy, so the effects are small but visible.")


def hidden_size(d):
    sh, r = d["shared"], d["reference"]
    acc = np.mean(r["accuracy"], axis=1)
    best = sh["widths"][int(np.argmax(acc))]
    return ("The lecture's rule of thumb for the hidden layer size is sqrt(n + m) + a with a between 1 and 10: for "
            "iris (n = 4 inputs, m = 3 classes) sqrt(7) + 1 = 3.6 to sqrt(7) + 10 = 12.6, i.e. 4 to 12 units (shaded).  "
            "Too few units cannot separate the three "
            f"classes; beyond a handful the test accuracy no longer improves (best mean {acc.max():.1%} at {best} "
            f"units, {acc[0]:.1%} with 1 unit) while the training loss keeps falling slowly.")


TEXT = {"activations": activations, "vanishing": vanishing, "symmetry": symmetry, "lr": learning_rate,
        "batch": batch_size, "overfitting": overfitting, "hidden": hidden_size}
