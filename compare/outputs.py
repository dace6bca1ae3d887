"""Safe writing of the command's outputs: one file (``check --json``); internal errors' tracebacks.

A file (``check_file_output`` before the run, ``FileTarget.write`` after it):
- ``-`` is standard output; so is any path that leads to this process's fd 1 (``/dev/stdout``,
  ``/dev/fd/1``, ``/proc/self/fd/1``, a symlink to one of them), fd 2 is standard error;
- a path that exists and is a character device or a FIFO (``/dev/null``, a named pipe) is written
  through in place, never replaced;
- a regular file, or a path that does not exist yet, is written atomically (temp file beside it, then
  rename); a symlink to a regular file keeps the link and replaces its target;
- a folder, a socket, a block device, a dangling symlink, an empty path are refused (exit 2), and so is a
  file whose folder does not exist or cannot be written: this is checked before the run starts.

The report folder is compare/report_dir.py's.
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot or must not be written (exit 2)."""


def nonempty(option: str):
    """argparse type: a path option that must not be empty ('argument --json: must not be empty ...')."""
    def parse(text: str) -> str:
        if text == "":
            raise argparse.ArgumentTypeError("must not be empty; give a path"
                                             + (" (or - for standard output)" if option == "--json" else ""))
        return text
    parse.__name__ = f"{option} path"
    return parse


# ---- one file ------------------------------------------------------------------------------------
@dataclass
class FileTarget:
    option: str
    path: str
    kind: str        # "stdout", "stderr", "fd", "through" (device, FIFO) or "atomic" (a regular file)
    real: str = ""   # "through"/"atomic": the path written (a symlink's target for "atomic")
    fd: int = -1     # "fd": the descriptor

    @property
    def to_stdout(self) -> bool:
        return self.kind == "stdout"

    def write(self, data: bytes) -> None:
        if self.kind in ("stdout", "stderr"):
            stream = sys.stdout if self.kind == "stdout" else sys.stderr
            stream.flush()
            stream.write(data.decode("utf-8"))
            stream.flush()
        elif self.kind == "fd":
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        elif self.kind == "through":
            with open(self.real, "wb") as f:
                f.write(data)
        else:
            from manual.weights import atomic_write_bytes

            atomic_write_bytes(self.real, data)


def _fd_alias(path: str) -> int | None:
    """The descriptor N when ``path`` leads (through symlinks) to /proc/<this pid>/fd/N, else None."""
    p = os.path.abspath(path)
    for _ in range(40):
        parent, name = os.path.split(p)
        full = os.path.join(os.path.realpath(parent), name)
        m = re.fullmatch(r"/proc/(\d+)(?:/task/\d+)?/fd/(\d+)", full)
        if m and int(m[1]) == os.getpid():
            return int(m[2])
        if not os.path.islink(full):
            return None
        p = os.path.join(os.path.dirname(full), os.readlink(full))
    return None


def check_file_output(path, option: str = "--json") -> FileTarget:
    """What writing ``path`` will do, checked now (before the run): raises OutputError saying what is wrong."""
    path = os.fspath(path)
    if path == "":
        raise OutputError(f"{option} must not be empty; give a file name (or - for standard output)")
    if path == "-":
        return FileTarget(option, path, "stdout")
    fd = _fd_alias(path)
    if fd is not None:
        if fd in (1, 2):
            return FileTarget(option, path, "stdout" if fd == 1 else "stderr", fd=fd)
        import fcntl  # POSIX only, as /dev/fd and /proc/self/fd are

        try:
            mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError as e:
            raise OutputError(f"{option} {path!r} is descriptor {fd}, which cannot be written: {e.strerror}") from None
        if mode == os.O_RDONLY:
            raise OutputError(f"{option} {path!r} is descriptor {fd}, which is open for reading only; give a file "
                              "name (or - for standard output)")
        return FileTarget(option, path, "fd", fd=fd)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise OutputError(f"{option} {path!r} is a symbolic link to {os.readlink(path)!r}, which does not "
                              "exist; remove the link or give another path") from None
        st = None
    except OSError as e:
        raise OutputError(f"{option} {path!r} cannot be written: {e.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{option} {path!r} is a folder; give a file name")
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        if not os.access(path, os.W_OK):
            raise OutputError(f"{option} {path!r} cannot be written: permission denied")
        return FileTarget(option, path, "through", real=path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{option} {path!r} is not a regular file, character device or FIFO; give a file name")
    real = os.path.realpath(path)
    _probe_folder(os.path.dirname(real) or ".", option, path)
    return FileTarget(option, path, "atomic", real=real)


def _probe_folder(folder: str, option: str, path: str) -> None:
    """Create and remove a temp file in ``folder``: the only sure test that the atomic write will work."""
    if not os.path.isdir(folder):
        what = "does not exist" if not os.path.exists(folder) else "is not a folder"
        raise OutputError(f"{option} {path!r} cannot be written: folder {folder!r} {what}")
    why = cannot_create_in(folder)
    if why is not None:
        raise OutputError(f"{option} {path!r} cannot be written: folder {folder!r}: {why}")


def cannot_create_in(folder) -> str | None:
    """Why nothing can be created in ``folder`` (the OS's reason), or None: a temp file made and removed,
    the only sure test (os.access says yes to root even where nothing can be created: /proc, /sys)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".compare-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return e.strerror
    return None


# ---- internal errors -------------------------------------------------------------------------------
def save_traceback(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback to a new file in the temp folder; its path, or None if it cannot be saved."""
    try:
        fd, name = tempfile.mkstemp(prefix="compare-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return Path(name)
    except OSError:
        return None
