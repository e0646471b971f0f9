"""Reading and copying student files without ever following a link.

A submission is untrusted data: a symbolic link in it could point at the gradebook,
``solutions/`` or an instructor's secret, and a FIFO could block the grader. Everything
here walks with ``lstat``, opens with ``O_NOFOLLOW`` and copies regular files only;
whatever else it meets is refused and named (never read).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class TooLarge(RuntimeError):
    pass


@dataclass
class Copied:
    files: list[str] = field(default_factory=list)  # relative paths copied
    refused: list[str] = field(default_factory=list)  # "<path>: <why>"
    bytes: int = 0


def open_regular(path: str | Path) -> int | None:
    """A read descriptor for a regular file, never through a link; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # a symbolic link (ELOOP), unreadable, gone
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def kind(path: str | Path) -> str:
    """What a path is, from lstat: 'file', 'folder', 'symbolic link', 'FIFO', ..."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "unreadable"
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
                       (stat.S_ISBLK, "device")):
        if test(mode):
            return name
    return "special file"


def walk(folder: Path):
    """(relative path, kind) of everything under ``folder``, links not followed, sorted."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top) / name
            what = kind(path)
            if what != "folder":
                yield path.relative_to(folder), what
        dirs[:] = [d for d in dirs if kind(Path(top) / d) == "folder"]


def copy_tree(source: Path, dest: Path, max_bytes: int, include: Callable[[Path], bool] = lambda rel: True,
              mode: int = 0o644) -> Copied:
    """Copy the regular files under ``source`` that ``include`` accepts; refuse the rest.

    Raises TooLarge when the files copied would exceed ``max_bytes`` in total."""
    result = Copied()
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    for rel, what in walk(source):
        if not include(rel):
            continue
        fd = open_regular(source / rel) if what == "file" else None
        if fd is None:
            result.refused.append(f"{rel}: {what if what != 'file' else 'unreadable'} refused")
            continue
        with os.fdopen(fd, "rb") as src:
            result.bytes += os.fstat(src.fileno()).st_size
            if result.bytes > max_bytes:
                raise TooLarge(f"the submitted files exceed {max_bytes / 2**20:g} MB in total")
            (dest / rel).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with open(dest / rel, "wb") as out:
                shutil.copyfileobj(src, out)
        os.chmod(dest / rel, mode)
        result.files.append(str(rel))
    return result


def fingerprint(folder: Path) -> str:
    """A digest of the names, kinds and contents of everything under ``folder`` (links not followed)."""
    digest = hashlib.sha256()
    for rel, what in walk(folder):
        digest.update(f"{rel}\0{what}\0".encode())
        fd = open_regular(folder / rel) if what == "file" else None
        if fd is not None:
            with os.fdopen(fd, "rb") as f:
                for chunk in iter(lambda: f.read(2**20), b""):  # noqa: B023 (f is this iteration's file)
                    digest.update(chunk)
    return digest.hexdigest()
