"""Run a real Triton Inference Server (2.51, the binary inside the PyPI wheel nvidia-pytriton) on 127.0.0.1.

What makes it work here (see shared NOTES): the backend directory must be symlinks (copies break RPATH), the
python-backend stub needs the interpreter's libpython on LD_LIBRARY_PATH, and the stub's Python environment is
.venv-serving (numpy<2) put first on PATH, because numpy 2 silently corrupts tensors in this stub. Every port is
on loopback: fixed ones when given (so clients find a restarted server where it was), else free ones; the
server is stopped by PID and the shared-memory regions it left are removed. A repository whose models ask for
KIND_GPU is refused on a host without a GPU, naming the model, unless cpu_fallback says to run it on the CPU.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from components.config import PROJECT_ROOT
from components.errors import MissingFileError, SidrecError
from components.local.procs import free_port, http_ok, port_open, start_process, stop_process, wait_until

SHM_GLOB = "/dev/shm/triton_python_backend_shm_region_*"


def tritonserver_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError("nvidia-pytriton is not installed (scripts/setup.sh installs it --no-deps)")
    return Path(spec.submodule_search_locations[0]) / "tritonserver"


def serving_env_dir() -> Path:
    path = PROJECT_ROOT / ".venv-serving"
    if not (path / "bin" / "python").exists():
        raise MissingFileError(f"{path} missing: run scripts/setup_serving.sh (numpy<2 for the python backend)")
    return path


def backend_dir(workdir: Path) -> Path:
    """backends/python as symlinks into the wheel (copies would break the library's RPATH)."""
    source = tritonserver_dir()
    target = workdir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": source / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": source / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": source / "python_backend_stubs" / "3.11" / "triton_python_backend_stub",
    }
    for name, src in links.items():
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src)
    return workdir / "backends"


@dataclass
class TritonServer:
    http_port: int
    grpc_port: int
    metrics_port: int
    process: subprocess.Popen
    log_path: Path
    shm_before: set[str] = field(default_factory=set)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        for path in set(glob.glob(SHM_GLOB)) - self.shm_before:  # regions a killed stub can leave behind
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def s3_repository_url(endpoint_url: str, repository: str) -> str:
    """Triton's form of an S3 repository on a custom endpoint: s3://http://host:port/bucket/prefix.

    `repository` is the s3://bucket/prefix the exporter wrote to; Triton needs the endpoint inside the URL.
    """
    if not repository.startswith("s3://"):
        raise ValueError(f"not an s3:// repository: {repository!r}")
    return f"s3://{endpoint_url.rstrip('/')}/{repository[5:].strip('/')}"


class TritonStartError(SidrecError):
    """Triton cannot start here as asked (a port in use, a GPU repository on a CPU-only host)."""


def gpu_models(model_repository: Path) -> list[str]:
    """Models of a local repository whose config.pbtxt asks for KIND_GPU instances."""
    return sorted(p.parent.name for p in Path(model_repository).glob("*/config.pbtxt") if "KIND_GPU" in p.read_text())


def _has_gpu() -> bool:
    """What Triton itself checks: an NVIDIA driver that lists a device."""
    import shutil

    return shutil.which("nvidia-smi") is not None and (
        subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=False).returncode == 0
    )


def start_triton(
    model_repository: str | Path,
    workdir: Path,
    timeout: float = 180.0,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    ports: tuple[int, int, int] | None = None,
    cpu_fallback: bool = False,
    poll_s: int | None = None,
) -> TritonServer:
    """Start tritonserver on 127.0.0.1 (http, grpc, metrics `ports`, or free ones) and wait until
    /v2/health/ready (models loaded).

    For an S3 repository pass s3_repository_url(...) and the credentials in `extra_env` (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION); Triton copies the model into workdir/s3_mount. With `poll_s`,
    Triton polls the repository that often and loads the version a new config.pbtxt pins without a restart.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if poll_s:
        extra_args = [*(extra_args or []), "--model-control-mode=poll", f"--repository-poll-secs={poll_s}"]
    if not str(model_repository).startswith("s3://"):
        wanted_gpu = gpu_models(Path(model_repository))
        if wanted_gpu and not _has_gpu():
            if not cpu_fallback:
                raise TritonStartError(
                    f"{model_repository}: model(s) {wanted_gpu} ask for KIND_GPU but this host has no GPU: "
                    "export with serving.kind: cpu, or start with --cpu-fallback to run them on the CPU"
                )
            model_repository = _cpu_copy(Path(model_repository), workdir / "cpu_repository")
    if ports is not None:
        busy = [p for p in ports if port_open(p)]
        if busy:
            raise TritonStartError(f"port(s) {busy} on 127.0.0.1 are in use: stop what holds them or pick others")
    ports = list(ports) if ports is not None else [free_port() for _ in range(3)]
    env_dir = serving_env_dir()
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LD_LIBRARY_PATH": ":".join(
            filter(None, [sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH", "")])
        ),
        "HOME": str(workdir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("SIDREC_TRITON_THREADS", "1"),
    }
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):  # s3:// repositories
        if key in os.environ:
            env[key] = os.environ[key]
    (workdir / "s3_mount").mkdir(exist_ok=True)
    env["TRITON_AWS_MOUNT_DIRECTORY"] = str(workdir / "s3_mount")  # local copy of an S3 repository
    env.update(extra_env or {})
    cmd = [
        str(tritonserver_dir() / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_dir(workdir)}",
        "--http-address=127.0.0.1",
        f"--http-port={ports[0]}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports[1]}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={ports[2]}",
        "--strict-readiness=true",
        "--log-verbose=0",
        *(extra_args or []),
    ]
    shm_before = set(glob.glob(SHM_GLOB))
    log_path = workdir / "tritonserver.log"
    proc = start_process(cmd, log_path, env=env, cwd=workdir)
    server = TritonServer(ports[0], ports[1], ports[2], proc, log_path, shm_before)
    try:
        wait_until(
            lambda: http_ok(f"http://{server.http_url}/v2/health/ready"), timeout, "tritonserver", proc, log_path
        )
    except BaseException:
        server.stop()
        raise
    return server


def _cpu_copy(repository: Path, target: Path) -> Path:
    """A copy of a local repository whose configs ask for KIND_CPU: the GPU repository's CPU fallback (symlinked
    version directories, rewritten config.pbtxt files)."""
    import shutil

    shutil.rmtree(target, ignore_errors=True)
    for config in repository.glob("*/config.pbtxt"):
        model = target / config.parent.name
        model.mkdir(parents=True)
        (model / "config.pbtxt").write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))
        for version in config.parent.iterdir():
            if version.is_dir():
                (model / version.name).symlink_to(version.resolve(), target_is_directory=True)
    return target
