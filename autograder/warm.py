"""Warm kernels: the expensive start-up (importing TensorFlow, IPython) paid once per worker.

A grading worker starts one :class:`ForkServer`: a bubblewrap sandbox (its own user, PID,
network... namespaces, the same read-only view as a cold kernel's, as a sandbox uid when
the grader is root) running :mod:`autograder.forkserver`, which imports the assignment's
libraries and then forks one kernel per submission, each in new namespaces of its own.
:class:`autograder.sandbox.SandboxedKernelManager` (``warm = True``) then starts
:mod:`autograder.warm_client` instead of a cold sandbox; the client falls back to the cold
command when the server cannot serve. The README's "Warm kernels" section gives the
safety argument.
"""

from __future__ import annotations

import ast
import atexit
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from multiprocessing import util
from pathlib import Path

import nbformat

from autograder.forkserver import OLD_TMP, STAGE
from autograder.sandbox import (
    UidSlot,
    drop_to,
    kernel_environment,
    mount_options,
    namespace_options,
    python_dirs,
)

# Imported by the server before it forks: only libraries that start no thread at import (the
# server's environment asks every library for one thread; each kernel gets its own setting)
# and keep no state a forked kernel could not use.
PRELOADABLE = ("numpy", "scipy", "pandas", "sklearn", "keras", "tensorflow", "jax", "matplotlib")
READY_SECONDS = 300  # importing TensorFlow on a busy machine
SERVER_SOURCE = Path(__file__).with_name("forkserver.py")
CLIENT = Path(__file__).with_name("warm_client.py")
# Runs the server's file as `python -c` would run its text (the autograder package is not
# visible in the sandbox): in __main__, with sys.path[0] == "" like a cold kernel's.
BOOTSTRAP = "import sys; path = sys.argv.pop(1); exec(compile(open(path).read(), path, 'exec'))"


def preload_for(notebooks: list[Path]) -> list[str]:
    """The preloadable libraries that these notebooks import (top-level names, sorted)."""
    found = set()
    for path in notebooks:
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_size > 20 * 2**20:
            continue
        found.update(_imports(str(path), stat.st_mtime_ns, stat.st_size))
    return sorted(found & set(PRELOADABLE))


@functools.lru_cache(maxsize=256)  # a worker grades many submissions of the same source notebooks
def _imports(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    """The top-level modules a notebook's code cells import (the file as of ``mtime_ns``, ``size``)."""
    try:
        cells = nbformat.read(path, as_version=4).cells
    except Exception:  # a submission that is not a notebook: nothing to preload for it
        return frozenset()
    found = set()
    for cell in cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return frozenset(found)


class ForkServer:
    """One fork server and its folder (sockets, staged files) on the host."""

    def __init__(self, keras_backend: str, preload: list[str]):
        self.owner = os.getpid()  # a forked worker inherits this object, not the server
        self.slot = UidSlot() if os.geteuid() == 0 else None
        self.folder = tempfile.mkdtemp(prefix="autograder-warm-")
        self.kernels = os.path.join(self.folder, "kernels")
        os.mkdir(self.kernels, 0o700)
        if self.uid is not None:
            for path in (self.folder, self.kernels):
                os.chown(path, self.uid, self.uid)
        self.problem = ""
        self._errors = tempfile.TemporaryFile()
        cmd = drop_to(self.uid) if self.uid is not None else []
        cmd += namespace_options(own_user_namespace=True)
        cmd += ["--dir", STAGE, "--dir", OLD_TMP] + mount_options([(self.folder, self.folder, True)], 16 * 2**20)
        kept = [d for d in python_dirs() if d.startswith("/tmp/")]  # the kernel's /tmp would hide them
        # The server's code is a copy in its own folder (kernels never see that folder), so its
        # command line stays short: `ps`, and a kernel's /proc/1/cmdline, show only this bootstrap.
        source = os.path.join(self.folder, "forkserver.py")
        shutil.copyfile(SERVER_SOURCE, source)
        os.chmod(source, 0o444)
        cmd += [sys.executable, "-c", BOOTSTRAP, source, self.folder, ",".join(preload), json.dumps(kept)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._errors, stdin=subprocess.DEVNULL,
                                        env=kernel_environment(keras_backend, threads=1))
        self._wait_ready()

    @property
    def uid(self) -> int | None:
        return self.slot.uid if self.slot else None

    @property
    def socket(self) -> str:
        return os.path.join(self.folder, "server.sock")

    def _wait_ready(self) -> None:
        ready, _, _ = select.select([self.process.stdout], [], [], READY_SECONDS)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if line != "ready 1":
            self._errors.seek(0)
            tail = self._errors.read().decode(errors="replace").strip().splitlines()[-3:]
            self.problem = f"the fork server did not start ({line or 'no answer'}): {' | '.join(tail)}"
            self.stop()

    def usable(self) -> bool:
        return not self.problem and self.process.poll() is None

    def kernel_dir(self) -> str:
        """A new folder for one kernel's files, which only that kernel will see."""
        path = tempfile.mkdtemp(dir=self.kernels)
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def stop(self) -> None:
        if os.getpid() != self.owner:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # bwrap: its PID namespace, every kernel in it, goes too
            self.process.wait()
        if self.slot is not None:
            self.slot.release()  # kills whatever is left under the uid
            self.slot = None
        shutil.rmtree(self.folder, ignore_errors=True)


_servers: dict[tuple, ForkServer] = {}


def server_for(keras_backend: str, preload: list[str]) -> ForkServer | None:
    """This process's fork server for these settings, started on first use; None when it
    cannot run (then kernels start cold; the reason is in the worker's log)."""
    key = (keras_backend, tuple(preload))
    server = _servers.get(key)
    if server is not None and not server.problem and not server.usable():  # it died: start once more
        server.stop()
        server = None
    if server is None:
        if not _servers:  # this process's first: stop them when it ends (a pool worker skips atexit)
            util.Finalize(None, stop_all, exitpriority=100)
        server = _servers[key] = ForkServer(keras_backend, preload)
        if server.problem:
            print(f"autograder: {server.problem}: kernels start cold", file=sys.stderr)
    return server if server.usable() else None


def stop_all() -> None:
    while _servers:
        _servers.popitem()[1].stop()


atexit.register(stop_all)
