"""An offline environment for executing notebooks in tests and CI.

Two pieces, both switched on through environment variables that a Jupyter kernel
inherits from the process that starts it:

* ``KERAS_HOME`` points at a cache directory seeded with *stand-in* copies of the
  Keras data sets the course uses (see :mod:`coursetools.standin_data`), so
  ``keras.datasets.fashion_mnist.load_data()`` works exactly as students call it but
  never downloads.
* ``IPYTHONDIR`` points at an IPython profile whose start-up script blocks every
  network connection that is not to this machine, so a notebook that tries to
  download something fails loudly with ``NetworkAccessBlocked`` instead of hanging or
  silently using whatever happens to be cached.
"""

from __future__ import annotations

import os
from pathlib import Path

from coursetools import ROOT, standin_data

# Kept between runs: making the stand-in data takes a few seconds.
DEFAULT_DIR = ROOT / "build" / "offline"

STARTUP_SCRIPT = '''\
# Installed by coursetools.offline for test runs: no network for notebooks.
import socket as _socket


class NetworkAccessBlocked(ConnectionError):
    """Raised when a notebook reaches for the network during a course test run."""


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


def _is_local(host):
    return host in _LOCAL_HOSTS or str(host).startswith("127.")


def _refuse(what):
    raise NetworkAccessBlocked(
        f"network access is disabled while the course tests run (tried {what}). "
        "Notebooks must use offline data: see 'Offline data' in the README."
    )


_real_getaddrinfo = _socket.getaddrinfo
_real_connect = _socket.socket.connect
_real_connect_ex = _socket.socket.connect_ex


def _getaddrinfo(host, *args, **kwargs):
    if not _is_local(host if not isinstance(host, bytes) else host.decode()):
        _refuse(f"to look up {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock, address):
    if sock.family in (_socket.AF_INET, _socket.AF_INET6) and not _is_local(address[0]):
        _refuse(f"to connect to {address[0]!r}")


def _connect(self, address):
    _check_address(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check_address(self, address)
    return _real_connect_ex(self, address)


_socket.getaddrinfo = _getaddrinfo
_socket.socket.connect = _connect
_socket.socket.connect_ex = _connect_ex
del _socket
'''


def prepare(workdir: Path = DEFAULT_DIR) -> dict[str, str]:
    """Create the offline cache and IPython profile under ``workdir``; return the env vars."""
    workdir = Path(workdir)
    keras_home = workdir / "keras_home"
    standin_data.seed_keras_cache(keras_home)
    startup = workdir / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-block-network.py").write_text(STARTUP_SCRIPT)
    return {
        "KERAS_HOME": str(keras_home),
        "IPYTHONDIR": str(workdir / "ipython"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def activate(workdir: Path = DEFAULT_DIR) -> dict[str, str]:
    """Prepare the offline environment and export it to this process (and its kernels)."""
    env = prepare(workdir)
    os.environ.update(env)
    return env
