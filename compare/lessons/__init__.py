"""``python -m compare lessons``: the lecture's claims about back-propagation and training, each shown
by one experiment run on the candidate and the reference implementation alike (compare.protocol),
with the agreement of the two over every number plotted."""
from __future__ import annotations

from . import experiments_a as A
from . import experiments_b as B

# name -> (title, experiment(cand, ref, cfg) -> data); the order is the lessons' order
LESSONS = {
    "activations": ("Activations and their derivatives", A.activations),
    "vanishing": ("Vanishing gradients", A.vanishing),
    "symmetry": ("Symmetry: why the initial weights must differ", A.symmetry),
    "lr": ("The learning rate", B.learning_rate),
    "batch": ("Gradient descent, SGD and mini-batches", B.batch_size),
    "overfitting": ("Overfitting and its remedies", B.overfitting),
    "hidden": ("How many hidden units?", B.hidden_size),
}
