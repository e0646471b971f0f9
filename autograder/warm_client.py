"""The process jupyter_client sees as a warm kernel (standard library only, runs on the host).

    python -I -S warm_client.py SERVER_SOCKET REQUEST_JSON -- COLD_KERNEL_COMMAND...

It asks the fork server (:mod:`autograder.forkserver`) for a kernel and then stands in
for it: it lives as long as the kernel does and exits with the kernel's status (killed
by SIGXCPU, it kills itself with SIGXCPU), so the grader reads why a kernel died exactly
as for a cold one. Killed or terminated, it closes the connection, and the server kills
the kernel with everything it started. If the server cannot provide a kernel (not
running, refused, too slow), it becomes the cold kernel: it execs COLD_KERNEL_COMMAND,
which the grader prepared as usual. A warm start that fails is a cold start, never a
lost submission.
"""

import json
import os
import resource
import signal
import socket
import sys

COLD_NOTE = "cold-start.txt"
STARTUP_SECONDS = 60  # the server's answer; it only sets up a sandbox (milliseconds when idle)


def mirror(status: int) -> None:
    """Exit as the kernel did."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def main(socket_path: str, request: str, cold: list[str]) -> None:
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(STARTUP_SECONDS)
        conn.connect(socket_path)
        conn.sendall(request.encode() + b"\n")
        answers = conn.makefile("rb")
        first = answers.readline().decode()
        if first.strip() != "started":
            raise ConnectionError(first.strip() or "no answer")
    except OSError as exc:  # the reason goes beside the connection file, where the grader reads it
        note = os.path.join(json.loads(request)["dir"], COLD_NOTE)
        with open(note, "w") as f:
            f.write(f"{type(exc).__name__}: {exc}"[:300])
        os.execvp(cold[0], cold)
    conn.settimeout(None)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # die of it; the server sees the close
        signal.signal(sig, lambda number, _: (signal.signal(number, signal.SIG_DFL), os.kill(os.getpid(), number)))
    last = answers.readline().decode().split()
    mirror(int(last[1]) if len(last) == 2 and last[0] == "exit" else signal.SIGKILL)


if __name__ == "__main__":
    split = sys.argv.index("--")
    main(sys.argv[1], sys.argv[2], sys.argv[split + 1:])
