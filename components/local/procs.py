"""Start and stop local servers by PID (SeaweedFS, Redis, Triton, Airflow, feast serve).

Tests and `sidrec` commands start servers on 127.0.0.1 and free ports, and must stop exactly the process
they started (never by name), including its children: each server runs in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(
    cmd: Sequence[str], log_path: str | Path, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.Popen:
    """Start `cmd` in a new session (own process group), stdout+stderr to `log_path`."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def stop_process(proc: subprocess.Popen | int, timeout: float = 15.0) -> None:
    """SIGTERM the process group of `proc` (by PID), then SIGKILL if it has not exited in `timeout` s.

    A process started without its own session shares our group: it is signalled alone, never our own group.
    """
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    own_group = pgid == os.getpgrp()

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig) if own_group else os.killpg(pgid, sig)

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(proc, subprocess.Popen):
            if proc.poll() is not None:
                break
        elif not _alive(pid):
            break
        time.sleep(0.1)
    else:
        send(signal.SIGKILL)
        if isinstance(proc, subprocess.Popen):
            proc.wait(timeout=5)
    if not own_group:  # children that outlived the leader
        send(signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log_path: str | Path | None = None,
) -> None:
    """Poll `check` until true; fail early (with the log tail) if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{log_tail(log_path)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{log_tail(log_path)}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
        return 200 <= resp.status < 300


def log_tail(log_path: str | Path | None, n: int = 40) -> str:
    """The last `n` lines of a server log (empty when there is none), for error messages."""
    if not log_path or not Path(log_path).exists():
        return ""
    lines = Path(log_path).read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])
