"""The report folder (``report --out``), replaced whole or not at all.

A report folder (``ReportDir``): the new report is built in a hidden sibling folder
``.NAME.compare-XXXX`` and swapped in at the end with one atomic exchange of the two folders (Linux
renameat2 RENAME_EXCHANGE; elsewhere two renames with SIGINT/SIGTERM held off between them), so after an
interruption the folder holds the old report or the new one, complete.  An existing folder may hold only
the files of a previous report (REPORT_FILES and the hidden ``.NAME.*.tmp`` temp files of an interrupted
atomic write); anything else is refused naming one such entry, unless ``force``: then the other entries
are moved into the new report folder just before the swap and kept.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

from .outputs import OutputError, cannot_create_in

REPORT_FILES = frozenset({
    "report.md", "report.html", "results.json", "loss.png", "errors.png", "divergence.png", "confusion.png",
    "init.safetensors", "final-candidate.safetensors", "final-reference.safetensors",
    "restored-candidate.safetensors", "restored-reference.safetensors",
    # the names of reports written before the roles (issue 12): still recognised, so they are replaced
    "final-manual.safetensors", "final-torch.safetensors", "restored-manual.safetensors", "restored-torch.safetensors"})
_TEMP = re.compile(r"^\.(?P<name>[^/]+)\.[^/.]+\.tmp$")  # manual.weights.atomic_write_bytes's temp files


def is_report_entry(entry: os.DirEntry | Path) -> bool:
    """A file a previous report wrote: one of REPORT_FILES (a regular file) or a leftover temp file of one."""
    name = entry.name
    m = _TEMP.match(name)
    if m is not None and m["name"] in REPORT_FILES:
        return True
    try:
        return name in REPORT_FILES and stat.S_ISREG(os.lstat(os.fspath(entry)).st_mode)
    except OSError:
        return False


def foreign_entries(folder) -> list[str]:
    """The entries of ``folder`` that are not a previous report's, sorted."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not is_report_entry(e))


class ReportDir:
    """The --out folder of a report: validated on construction (nothing is created); ``begin()`` makes the
    hidden build folder to write into, ``commit()`` swaps it in, ``abort()`` removes it."""

    def __init__(self, path, force: bool = False, option: str = "--out"):
        given = os.fspath(path)
        if given == "":
            raise OutputError(f"{option} must not be empty; give a folder for the report")
        p = Path(given)
        if p.is_symlink() and not p.exists():
            raise OutputError(f"{option} {given!r} is a symbolic link to {os.readlink(p)!r}, which does not exist; "
                              "remove the link, create its target or give another folder")
        self.given, self.force, self.option = given, force, option
        self.path = Path(os.path.realpath(p))  # a symlink to a folder stays a symlink: its target is swapped
        self.build: Path | None = None
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{option} {given!r} exists and is not a directory; give a folder for the report")
        if self.path.parent == self.path:
            raise OutputError(f"{option} {given!r} is the root folder; give a folder for the report")
        if self.path.is_dir():
            self._check_contents()
            if os.stat(self.path).st_dev != os.stat(self.path.parent).st_dev:
                raise OutputError(f"{option} {given!r} is a mount point, which cannot be swapped for a new report; "
                                  "give a folder inside it")
        ancestor = self.path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputError(f"{option} {given!r} cannot be created: {str(ancestor)!r} is not a folder")
        why = cannot_create_in(ancestor)
        if why is not None:
            raise OutputError(f"{option} {given!r} cannot be written: the report is built beside it, and folder "
                              f"{str(ancestor)!r} is not writable ({why})")

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.given

    def _check_contents(self) -> list[str]:
        foreign = foreign_entries(self.path)
        if foreign and not self.force:
            raise OutputError(f"{self.option} {self.given!r} holds {foreign[0]!r}, which is not a file of a previous "
                              "report; give a new or empty folder, or --force to replace the report there "
                              "(other files are kept)")
        return foreign

    def begin(self) -> Path:
        """The hidden build folder beside the target, created now (parents of the target too)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.build = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.compare-"))
        # mkdtemp makes 0700: a folder being replaced keeps its own mode (a private report stays private;
        # set at the swap, so that a read-only old folder does not make the build unwritable), a new one
        # gets what mkdir would
        self.mode = stat.S_IMODE(os.stat(self.path).st_mode) if self.path.is_dir() else 0o777 & ~_umask()
        os.chmod(self.build, self.mode | stat.S_IRWXU)
        return self.build

    def commit(self) -> None:
        """Swap the built report in (see the module docstring); the old report, if any, is removed."""
        build, target = self.build, self.path
        if build is None:
            raise RuntimeError("ReportDir.commit() without begin()")
        cwd = _cwd()
        os.chmod(build, self.mode)
        with _signals_held():
            if not target.is_dir():
                os.rename(build, target)
                old = None
            else:
                foreign = self._check_contents()  # again: the folder may have changed during the run
                moved = []
                try:
                    for name in foreign:  # --force: the other files go into the new folder, kept
                        os.rename(target / name, build / name)
                        moved.append(name)
                    old = _swap(build, target)
                except BaseException:
                    for name in moved:
                        os.rename(build / name, target / name)
                    raise
            self.build = None
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        if cwd is not None and (cwd == target or target in cwd.parents):
            try:
                os.chdir(cwd if cwd.is_dir() else target)  # the old folder's inode is gone: follow the name
            except OSError:
                pass

    def abort(self) -> None:
        if self.build is not None:
            shutil.rmtree(self.build, ignore_errors=True)
            self.build = None


def _cwd() -> Path | None:
    try:
        return Path(os.getcwd())
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> None:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); OSError where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _swap(build: Path, target: Path) -> Path:
    """Put ``build`` at ``target``; returns where the old ``target`` now is (to be removed)."""
    try:
        _exchange(build, target)
        return build
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(build, target)
    except BaseException:
        os.rename(old, target)
        raise
    return old


class _signals_held:
    """SIGINT, SIGTERM and SIGHUP are recorded, not acted on, inside the block; re-raised after it."""

    SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                    if s is not None)

    def __enter__(self):
        self.got, self.old = [], {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.old[s] = signal.signal(s, lambda signum, frame: self.got.append(signum))
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        for s in self.got:
            h = self.old.get(s)
            if callable(h):
                h(s, None)  # the default SIGINT handler raises KeyboardInterrupt now
            elif h == signal.SIG_DFL:
                signal.raise_signal(s)
        return False


