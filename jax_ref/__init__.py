"""The same MLP written as idiomatic JAX.  Never imports ``manual`` or ``torch_ref``.

    import jax_ref
    params = jax_ref.from_shared(weights)                     # {"W1": jnp array, "b1": ..., ...}
    logits = jax_ref.forward(params, X, None, "sigmoid", "softmax", None)
    loss, grads = jax.value_and_grad(jax_ref.batch_loss)(params, X, y, None, cfg)

float64: importing ``jax_ref`` turns on ``jax_enable_x64``.  JAX fixes an array's dtype when the
array is made (without x64 a float64 NumPy array silently becomes float32), so the flag has to be
set before any JAX array exists; that is why it is set here, at the package's import, before any
module of the package makes an array.  The flag only *permits* 64-bit types: float32 parameters
stay float32 (every constant below is a weakly typed Python scalar or is cast to the parameters'
dtype explicitly).  A program that made JAX arrays before importing ``jax_ref`` keeps those arrays
as they were.
"""
try:
    import jax
except ImportError:  # ModuleNotFoundError is an ImportError; compare.registry turns it into one line
    raise ModuleNotFoundError("the 'jax' implementation needs JAX: pip install -e '.[jax]'", name="jax") from None

jax.config.update("jax_enable_x64", True)

from .model import (  # noqa: E402
    ACTIVATIONS,
    LOSSES,
    OUTPUTS,
    Config,
    batch_loss,
    forward,
    from_shared,
    layer_pass,
    predict,
    to_shared,
)
from .train import train  # noqa: E402

__all__ = ["ACTIVATIONS", "OUTPUTS", "LOSSES", "Config", "forward", "batch_loss", "layer_pass", "predict",
           "from_shared", "to_shared", "train"]
