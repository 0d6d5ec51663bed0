"""A throwaway redis-server (Debian package) on 127.0.0.1, stopped by PID.

The port is a free one, or the one given: a server restarted on the port it had is found again by every client
(Feast's redis client reconnects by itself), which is how the fault benchmark restarts Redis empty.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.errors import MissingFileError
from components.local.procs import free_port, port_open, start_process, stop_process, wait_until


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def connection(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """redis-server on 127.0.0.1:`port` (a free one when None), no persistence, data dir `workdir`."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingFileError("redis-server not found: run scripts/setup_system.sh (apt-get install redis-server)")
    if port is not None and port_open(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is in use: stop what holds it or pick another")
    port = port if port is not None else free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        workdir / "redis.log",
    )
    wait_until(lambda: port_open(port), 20, "redis-server", proc, workdir / "redis.log")
    return RedisServer(port, proc)
