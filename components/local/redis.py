"""A throwaway redis-server (Debian package) on a free 127.0.0.1 port, stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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


def start_redis(workdir: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found: run scripts/setup_system.sh (apt-get install redis-server)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = start_process(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        workdir / "redis.log",
    )
    wait_until(lambda: port_open(port), 20, "redis-server", proc, workdir / "redis.log")
    return RedisServer(port, proc)
