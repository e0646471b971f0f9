"""Run each submission's Jupyter kernel inside a bubblewrap sandbox.

Only the *kernel* (the student's code) is sandboxed; nbgrader itself (reading the
gradebook, restoring test cells, saving scores) runs outside, as the instructor.
The kernel talks to nbgrader over Unix sockets (jupyter_client's ``ipc``
transport) in a private folder bound into the sandbox, because a kernel in its own
network namespace cannot reach the host's loopback.

Inside the sandbox the kernel
* has no network (``--unshare-net``) and its own PID, IPC and UTS namespaces;
* sees read-only system folders (``/usr``, ``/lib``, ``/etc``, ...), the Python
  installation and the environment that runs the grader, a private ``/tmp``, and,
  read-write, only its own working copy (``grading/autograded/<student>/<assignment>``);
  never ``solutions/``, the gradebook, other students' work or anyone's home;
* runs under resource limits (``prlimit``): CPU seconds, address space, processes,
  file size, open files;
* when the grader runs as root, runs as an unprivileged user of its own (one uid per
  parallel slot, via ``setpriv``), so the process limit is per submission and the
  kernel cannot undo its restrictions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, Unicode, default

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
FIRST_SANDBOX_UID = 64000  # uids 64000-64099 are unused on Debian/Ubuntu (reserved for local use)


class SandboxUnavailable(RuntimeError):
    pass


def check_available() -> str:
    """Raise SandboxUnavailable unless bubblewrap can start a sandbox here; return its version."""
    tools = ("bwrap", "prlimit", "setpriv") if os.geteuid() == 0 else ("bwrap", "prlimit")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise SandboxUnavailable(f"missing {', '.join(missing)}: install the Debian packages bubblewrap and util-linux")
    probe = subprocess.run(
        ["bwrap", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            "bubblewrap cannot create namespaces here: " + probe.stderr.strip()
            + " (on Ubuntu 24.04: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)"
        )
    return subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()


def python_dirs() -> list[str]:
    """The folders the kernel's Python needs: the environment and the interpreter it links to."""
    dirs = {sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    return sorted(d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs))


def _parents(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[: i + 1])) for i in range(1, len(parts) - 1)]


def bwrap_command(workdir: str, socket_dir: str, uid: int | None, limits: dict[str, int]) -> list[str]:
    """The command prefix that starts a program in the sandbox, in ``workdir``."""
    cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session"]
    if uid is None:
        cmd += ["--unshare-user"]
    else:  # root starts the sandbox; setpriv then drops to the slot's uid (needs these two caps, then none)
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            cmd += ["--ro-bind", d, d] if not os.path.islink(d) else ["--symlink", os.readlink(d), d]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = set()
    for source, writable in [(d, False) for d in python_dirs()] + [(socket_dir, True), (workdir, True)]:
        for parent in _parents(source):
            if parent not in made and parent not in SYSTEM_DIRS and parent != "/tmp":
                cmd += ["--perms", "0555", "--dir", parent]  # read-only: without --uid the kernel owns them
                made.add(parent)
        cmd += ["--bind" if writable else "--ro-bind", source, source]
    cmd += ["--remount-ro", "/", "--chdir", workdir, "--"]  # the sandbox's own root: nothing to write there
    if uid is not None:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
    cmd += ["prlimit", *(f"--{name}={value}" for name, value in limits.items()), "--"]
    return cmd


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in a bubblewrap sandbox (see the module docstring).

    Configured through nbgrader's config, e.g. ``c.SandboxedKernelManager.memory_mb = 4096``.
    """

    uid = Integer(None, allow_none=True, help="run the kernel as this uid (root only); None: the caller's uid"
                  ).tag(config=True)
    cpu_seconds = Integer(900, help="CPU time limit for the kernel process").tag(config=True)
    memory_mb = Integer(6144, help="address-space limit (TensorFlow reserves ~2 GB of it at import)").tag(config=True)
    max_processes = Integer(256, help="processes and threads of the sandbox's user").tag(config=True)
    max_file_mb = Integer(100, help="largest file the kernel may write").tag(config=True)
    keras_backend = Unicode("tensorflow").tag(config=True)
    threads = Integer(1, help="threads for the kernel's numerical libraries").tag(config=True)
    enabled = Bool(True, help="False: run kernels unsandboxed (autograder grade --unsafe)").tag(config=True)

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _default_ip(self):
        self._socket_dir = tempfile.mkdtemp(prefix="kernel-", dir=os.environ.get("AUTOGRADER_SOCKET_DIR"))
        return os.path.join(self._socket_dir, "ipc")

    @default("connection_file")
    def _default_connection_file(self):
        self.ip  # noqa: B018 (creates the socket folder)
        return os.path.join(self._socket_dir, "kernel.json")

    def limits(self) -> dict[str, int]:
        processes = self.max_processes if self.uid is not None else self.max_processes + _processes_of_this_user()
        return {"cpu": self.cpu_seconds, "as": self.memory_mb * 2**20, "nproc": processes,
                "fsize": self.max_file_mb * 2**20, "nofile": 1024, "core": 0}

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if not self.enabled:
            return cmd
        # In its own PID namespace the kernel cannot see the grader's pid, and ipykernel would
        # shut down thinking its parent exited; bwrap --die-with-parent does that job instead.
        return bwrap_command(self._workdir, self._socket_dir, self.uid, self.limits()) + cmd + [
            "--IPKernelApp.parent_handle=0"]

    async def _async_pre_start_kernel(self, **kw):
        if self.enabled:  # a signal would reach bwrap, not the kernel: interrupt by message
            self.kernel_spec.interrupt_mode = "message"
        self._workdir = os.path.realpath(kw.get("cwd") or os.getcwd())
        kw["env"] = kernel_environment(self.keras_backend, self.threads) if self.enabled else {
            **os.environ, "KERAS_BACKEND": self.keras_backend}
        if self.enabled and self.uid is not None:
            _hand_over(self._workdir, self.uid)
        if self.enabled:  # the kernel's own console chatter is not the student's output
            kw.setdefault("stdout", subprocess.DEVNULL)
            kw.setdefault("stderr", subprocess.DEVNULL)
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self.enabled and self.uid is not None:
            _hand_over(self._socket_dir, self.uid)  # the connection file is written by now
        return kernel_cmd, kw

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart and getattr(self, "_socket_dir", None):
            shutil.rmtree(self._socket_dir, ignore_errors=True)


def kernel_environment(keras_backend: str, threads: int) -> dict[str, str]:
    """A minimal environment: nothing of the instructor's (tokens, paths) leaks into the kernel."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "KERAS_BACKEND": keras_backend,
        "KERAS_HOME": "/tmp/.keras",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
        "IPYTHONDIR": "/tmp/.ipython",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONNOUSERSITE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # Kernels graded side by side share the cores instead of each kernel's thread
        # pools fighting over all of them (see grade.Limits.threads).
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(threads),
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                     f"intra_op_parallelism_threads={threads}",
    }


def _hand_over(path: str, uid: int) -> None:
    """Make ``path`` (recursively) belong to the sandbox user, who must write there."""
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


def _processes_of_this_user() -> int:
    """Processes and threads of the caller's uid: what RLIMIT_NPROC counts."""
    count = 0
    for pid in _pids_of(os.getuid()):
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return count


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def kill_leftovers(uid: int, wait: float = 20.0) -> int:
    """Kill every process of a sandbox uid (e.g. what a fork bomb left behind) and wait
    until they are gone, so the next submission in this slot starts with a clean slate."""
    import signal
    import time

    deadline, killed = time.monotonic() + wait, 0
    while (pids := _pids_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.1)
    return killed
