"""The warm-kernel fork server: runs *inside* a bubblewrap sandbox, standard library only.

The grader starts it once per grading worker (:class:`autograder.warm.ForkServer`, which
copies this file into the server's folder and runs it through a one-line ``python -c``: the
autograder package is not visible in the sandbox). It imports the heavy libraries an
assignment needs (TensorFlow, scikit-learn...) and IPython's kernel, then, for each
submission, forks a kernel that has run no student code. Each forked kernel gets, before
any student code runs:

* a new user, mount, PID, IPC, network and UTS namespace: it is PID 1 of its own PID
  namespace, so nothing it starts can outlive it (when PID 1 exits, the kernel kills
  every process in the namespace) and it cannot see the server or earlier kernels;
* a fresh size-limited ``/tmp`` holding a copy of its submission's files, a fresh
  ``/dev/shm``, a read-only ``/dev``, its own ``/proc``; of the server's folder it sees
  only its own socket folder, so nothing an earlier student wrote can reach it;
* no capabilities (dropped after those mounts), no new privileges, its resource limits.

Fork-safety: the server forks only while it has a single thread (checked before every
fork), so no lock can be held by a thread that the child would not have; the preloaded
libraries have only been imported, never run (TensorFlow's and OpenMP's thread pools
start at the first operation, in the child). If that ever fails, the server answers
"cold" and exits, and the grader starts a cold kernel instead.

Protocol, on a Unix socket: the client sends one JSON line ``{"dir", "workdir", "limits",
"disk_bytes", "env"}``; the server answers ``started`` once the kernel's sandbox is set up (or
``cold <why>``), then ``exit <wait status>`` when the kernel is gone. Closing the
connection kills the kernel and everything it started.
"""

import ctypes
import importlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys

CLONE = {"user": 0x10000000, "mount": 0x00020000, "pid": 0x20000000, "ipc": 0x08000000,
         "net": 0x40000000, "uts": 0x04000000}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 0x4000, 1 << 18
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP = 4, 24
STAGE = "/run/autograder/kernel"  # empty folders the sandbox provides: one kernel's files,
OLD_TMP = "/run/autograder/tmp"  # and the server's /tmp while the kernel's own replaces it
LIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
          "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source, target, fstype=None, flags=0, data=None):
    _check(libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()), f"mount {target}")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def drop_capabilities():
    """No capability left, in any set (the kernel runs as an ordinary user of its namespace)."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop bounding set")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    header, data = Header(0x20080522, 0), (ctypes.c_uint32 * 6)()  # version 3: two sets of three
    _check(libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def enter_namespaces():
    """New namespaces for the kernel (the caller's children land in the new PID namespace)."""
    uid, gid = os.getuid(), os.getgid()
    # Only the server itself is non-dumpable: a non-dumpable process cannot write its own uid_map.
    # Nothing can reach this one anyway: its kernel is in a PID namespace below it, and earlier
    # kernels are gone with theirs.
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    _check(libc.unshare(sum(CLONE.values())), "unshare")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def read_only(path):
    locked = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | 8 | 1024 | 2048 | 4096)  # flags to keep
    mount("none", path, flags=MS_REMOUNT | MS_BIND | MS_RDONLY | locked)


def build_sandbox(kernel_dir, workdir, disk_bytes, kept):
    """As PID 1 of the new namespaces: the kernel's own file system view (see the docstring).
    ``kept``: read-only folders under /tmp (a Python environment there) that stay visible."""
    mount("none", "/", flags=MS_REC | MS_PRIVATE)
    mount(kernel_dir, STAGE, flags=MS_BIND)  # keep them reachable: /tmp is replaced next
    mount("/tmp", OLD_TMP, flags=MS_BIND | MS_REC)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_bytes},mode=1777")
    # The folders leading to what stays visible live on small read-only file systems of their
    # own, as bubblewrap's do on its read-only root: the kernel cannot write beside them.
    scaffolds = sorted({"/tmp/" + path[len("/tmp/"):].split("/")[0] for path in [*kept, kernel_dir]})
    for top in scaffolds:
        os.mkdir(top)
        mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=65536,mode=0755")
    for path in kept:
        os.makedirs(path, exist_ok=True)
        mount(OLD_TMP + path[len("/tmp"):], path, flags=MS_BIND | MS_REC)
        read_only(path)
    os.makedirs(f"{kernel_dir}/sockets")
    mount(f"{STAGE}/sockets", f"{kernel_dir}/sockets", flags=MS_BIND)
    for top in scaffolds:
        mount("none", top, flags=MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    shutil.copytree(f"{STAGE}/input", workdir, symlinks=True)
    for stage in (STAGE, OLD_TMP):
        _check(libc.umount2(stage.encode(), MNT_DETACH), f"umount {stage}")
    read_only("/dev")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={64 * 2**20},mode=1777")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | 8)  # 8: MS_NOEXEC
    drop_capabilities()


def init(request, report):
    """PID 1 of the kernel's namespaces (like bubblewrap's): build the sandbox, start the kernel
    as PID 2, reap orphans, and when the kernel exits write its status on ``report`` and exit
    (the system then kills whatever is left in the namespace)."""
    try:
        build_sandbox(request["dir"], request["workdir"], request["disk_bytes"], KEPT)
        for name, value in request["limits"].items():  # the kernel inherits them (CPU time: its own)
            resource.setrlimit(LIMITS[name], (value, value))
        kernel = os.fork()
    except BaseException as exc:  # no kernel ran: say why (the server answers "cold")
        os.write(report, f"{exc!r}"[:400].replace("\n", " ").encode() + b"\n")
        os._exit(1)
    if kernel == 0:
        run_kernel(request)
    os.dup2(report, 3)
    os.closerange(4, 65536)
    os.write(3, b"ok\n")
    while True:
        pid, status = os.wait()
        if pid == kernel:
            os.write(3, f"exit {status}\n".encode())
            os._exit(0)


def run_kernel(request):
    """The kernel: nothing of the server's open files, output to /dev/null (like a cold one)."""
    try:
        os.environ.clear()  # the kernel's own environment: the server's has one thread for everything
        os.environ.update(request["env"])
        threads = int(request["env"].get("OMP_NUM_THREADS", "1"))
        if threads > 1:  # BLAS and OpenMP read the variables when loaded (in the server): tell them now
            try:
                from threadpoolctl import threadpool_limits

                POOLS.append(threadpool_limits(threads))  # kept: it applies while it lives
            except ImportError:
                pass
        os.chdir(request["workdir"])
        os.umask(0o022)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # like a cold kernel (only the server must not be)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.argv = ["ipykernel_launcher", "-f", f"{request['dir']}/sockets/kernel.json",
                    "--IPKernelApp.parent_handle=0", "--IPKernelApp.capture_fd_output=False"]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:
        os._exit(1)
    os._exit(0)


def watch(conn, request):
    """A child of the server: start the kernel in new namespaces and report on ``conn``."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # a session of its own: the scheduler shares the CPU between sessions
    read_end, write_end = os.pipe()
    try:
        enter_namespaces()
        first = os.fork()
    except OSError as exc:
        conn.sendall(f"cold cannot make the namespaces: {exc}\n".encode())
        os._exit(1)
    if first == 0:
        os.close(read_end)
        init(request, write_end)
    os.close(write_end)
    reports = os.fdopen(read_end, "rb")
    answer = reports.readline().strip()
    if answer != b"ok":
        os.waitpid(first, 0)
        conn.sendall(b"cold the kernel's sandbox could not be set up: " + answer + b"\n")
        os._exit(1)
    conn.sendall(b"started\n")
    pidfd = os.pidfd_open(first)
    while True:
        ready, _, _ = select.select([conn, pidfd], [], [])
        if pidfd in ready:
            _, status = os.waitpid(first, 0)
            last = reports.readline().strip() or f"exit {status}".encode()  # the kernel's, or init's
            conn.sendall(last + b"\n")
            os._exit(0)
        if not conn.recv(1):  # the client went away: the kernel goes too (with all it started)
            os.kill(first, signal.SIGKILL)
            os.waitpid(first, 0)
            os._exit(0)


def serve(listener):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    while True:
        conn, _ = listener.accept()
        request = json.loads(conn.makefile().readline())
        if threads() != 1:
            conn.sendall(f"cold the server has {threads()} threads: forking would not be safe\n".encode())
            sys.exit(1)
        if os.fork() == 0:
            listener.close()
            watch(conn, request)
        conn.close()


KEPT = []  # folders under /tmp that stay visible (read-only)
POOLS = []


def main(folder, modules, kept):
    KEPT.extend(kept)
    os.umask(0o077)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # nothing of the same user may ptrace or read it
    for name in ["ipykernel.kernelapp", *modules]:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{folder}/server.sock")
    listener.listen(16)
    print(f"ready {threads()}", flush=True)
    serve(listener)


if __name__ == "__main__":
    main(sys.argv[1], [m for m in sys.argv[2].split(",") if m], json.loads(sys.argv[3]))
