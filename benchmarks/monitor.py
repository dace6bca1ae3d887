"""The machine's load: other processes' CPU use (to drop disturbed rounds) and waiting for an idle machine.

torch's OpenMP threads slow down up to 100-fold when another process takes a core, and the other libraries'
thread pools suffer too, so the driver counts, per round, the CPU time that processes other than its own
used (/proc/stat minus our processes' /proc/PID/stat), and can wait for an idle machine (--wait-idle).
"""
from __future__ import annotations

import os
import platform
import time


def proc_cpu_seconds(pid) -> float:
    """user + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (busy time of /proc/stat's cpu line)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_idle(limit: float, ours=lambda: 0.0, window: float = 5.0, threshold: float = 0.1) -> float:
    """Wait (at most ``limit`` s) for ``window`` s in which processes other than ours (``ours()``: our CPU
    seconds so far) use < ``threshold`` cores.  Returns the seconds waited."""
    t0 = time.time()
    while True:
        b0, o0 = machine_busy_seconds(), ours()
        time.sleep(window)
        busy = max(0.0, machine_busy_seconds() - b0 - (ours() - o0)) / window
        if busy < threshold:
            return time.time() - t0
        if time.time() - t0 > limit:
            print(f"the machine did not become idle within {limit:.0f} s (other processes use {busy:.2f} cores); "
                  "measuring anyway", flush=True)
            return time.time() - t0
        print(f"waiting for an idle machine (other processes use {busy:.2f} cores) ...", flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"

