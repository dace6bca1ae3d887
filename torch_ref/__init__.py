"""The same MLP written as idiomatic torch.nn / torch.optim code.  Never imports ``manual``."""
from .model import (
                    ACTIVATIONS,
                    DTYPES,
                    LOSSES,
                    MLP,
                    OUTPUTS,
                    from_shared,
                    load_shared_file,
                    loss_fn,
                    make_optimizer,
                    shared_to_state_dict,
                    state_dict_to_shared,
                    weight_map,
)
from .train import Probe, accuracy, train

__all__ = ["MLP", "from_shared", "shared_to_state_dict", "state_dict_to_shared", "weight_map", "load_shared_file",
           "loss_fn", "make_optimizer", "Probe", "accuracy", "train", "ACTIVATIONS", "OUTPUTS", "LOSSES", "DTYPES"]
