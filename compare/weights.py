"""The shared initial weights of a check: from a safetensors file, or a seeded scheme."""
from __future__ import annotations

import numpy as np

from manual.weights import check_weights, init_weights, load_weights

from .vocabulary import param_names


def initial_weights(spec) -> dict[str, np.ndarray]:
    """The shared initial weights of ``spec``, in its dtype."""
    if spec.weights_file:
        w = load_weights(spec.weights_file)
        sizes = check_weights(w)
        if sizes != spec.sizes:
            raise ValueError(f"--weights {spec.weights_file!r} has layer sizes {sizes}; the spec needs {spec.sizes} "
                             f"({spec.data_name}: {spec.sizes[0]} inputs, {spec.sizes[-1]} classes; set --hidden to match)")
        return {k: w[k].astype(spec.np_dtype) for k in param_names(len(sizes) - 1)}
    return init_weights(spec.sizes, spec.init, spec.seed, spec.dtype)
