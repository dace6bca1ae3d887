"""The thread settings every computation of a check runs under, in every thread that computes."""
from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def one_torch_thread():
    """Data-set-sized tensors (iris to digits' 1433 x 64): extra threads only cost, and spin badly on a
    busy machine.  One intra-op torch thread, applied only when torch is already imported (by an
    implementation; compare itself never imports it), and one BLAS thread for NumPy when threadpoolctl
    is installed (digits' 32 x 1433 x 64 product measured 100 ms with OpenBLAS's threads on two busy
    cores, 0.3 ms with one).  OpenMP's thread count is kept per thread: every thread that trains
    (lockstep.run_all) enters this too, or torch's kernels there run on every core, and round otherwise
    than the same run in the main thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(1)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)
        if limits is not None:
            limits.restore_original_limits()
