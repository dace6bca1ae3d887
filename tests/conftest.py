import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny tensors: threads only add overhead, and two pytest workers share two cores."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield
