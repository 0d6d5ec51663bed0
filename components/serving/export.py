"""Export a recommender as a new version of a Triton model repository (local directory or s3://).

Layout: <repo>/<model_name>/config.pbtxt and <repo>/<model_name>/<N>/, where <N>/ is the recommender's own
directory (runtime.Recommender.save_pretrained: members, SID map, ranker, recommender.json with the served
settings) plus the backend's model.py, a copy of the whole components package (runtime/, so the backend imports
the same runtime core the library runs) and metadata.json.

Publishing is checked and atomic:
- before anything is published, the version directory is loaded back exactly as the backend will load it
  (Recommender.from_pretrained: weights, tokenizer, SID map of the model's own version, ranker) and asked for a
  recommendation; any failure refuses the export with the file and the reason;
- the version's files are written first, its metadata.json last of them, and config.pbtxt after all, pinning the
  served version (version_policy specific): Triton never loads a version whose upload was interrupted, and
  keeps serving the last complete one. The next export removes such orphaned partial versions (a version folder
  without metadata.json; prune_partial_versions); complete older versions stay for rollbacks.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

from components.config import PROJECT_ROOT, ServingConfig
from components.errors import SidrecError
from components.runtime.recommender import Recommender
from components.store.artifacts import ArtifactStore

TEMPLATE = PROJECT_ROOT / "serving" / "model_repository" / "sidrec"
PACKAGE = PROJECT_ROOT / "components"
RUNTIME_DIR = "runtime"
CONFIG_FILE = "config.pbtxt"
LAST_FILE = "metadata.json"  # written last into a version: a version without it is an interrupted upload
_VERSION_RE = re.compile(r"versions:\s*\[\s*(\d+)\s*\]")


class ExportError(SidrecError):
    """An export that was refused: what would have been served does not load or does not serve."""


def instance_kind(kind: str) -> str:
    """serving.kind -> Triton's instance kind: "gpu" and "cpu" as asked, "auto" = GPU when this host has one."""
    if kind == "auto":
        return "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
    return {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}[kind]


def render_config(
    model_name: str,
    kind: str,
    version: int,
    recommender: Recommender,
    dtype: str,
    max_batch_size: int = 32,
    queue_delay_us: int = 2000,
) -> str:
    template = (TEMPLATE / "config.pbtxt.template").read_text()
    body = "\n".join(line for line in template.splitlines() if not line.startswith("# Written by"))
    return body.format(
        model_name=model_name,
        instance_kind=kind,
        version=version,
        model_version=recommender.model_version or "",
        sid_version=recommender.sid_version,
        dtype=dtype,
        max_batch_size=max_batch_size,
        queue_delay_us=queue_delay_us,
    )


def served_version(config_text: str | None) -> int | None:
    """The version a config.pbtxt pins (None for none or an older config without a version policy)."""
    match = _VERSION_RE.search(config_text or "")
    return int(match.group(1)) if match else None


def build_version_dir(recommender: Recommender, target: Path, metadata: dict) -> Path:
    """One self-contained version directory: the recommender, model.py, the components package, metadata."""
    recommender.save_pretrained(target, extra={"exported_at": metadata["exported_at"]})
    shutil.copytree(PACKAGE, target / RUNTIME_DIR / "components", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(TEMPLATE / "1" / "model.py", target / "model.py")
    (target / LAST_FILE).write_text(json.dumps(metadata, indent=2, default=str))
    return target


def check_version_dir(target: Path, dtype: str = "float32") -> dict:
    """Load the version as the backend will and serve one request; ExportError naming what failed otherwise."""
    try:
        loaded = Recommender.from_pretrained(target, dtype=dtype if dtype != "auto" else "float32")
        item = loaded.sidmap.item_ids[0]
        rows = loaded.recommend([[item]], min(5, loaded.max_k))
    except SidrecError as exc:
        raise ExportError(f"refused to export {target}: {exc}") from exc
    except Exception as exc:  # any failure to load or serve is a refusal, with its reason
        raise ExportError(f"refused to export {target}: loading it back failed ({type(exc).__name__}: {exc})") from exc
    if not rows or not rows[0]:
        raise ExportError(f"refused to export {target}: it returned no item for a known history")
    return {"checked_items": len(rows[0])}


def export_triton_repository(
    recommender: Recommender,
    out_repo: str,
    serving: ServingConfig | None = None,
    version: int | None = None,
    endpoint_url: str | None = None,
) -> dict:
    """Write, check and publish a new version of the serving repository; returns plain types (XCom-ready).
    endpoint_url: the S3 endpoint of an s3:// repository (the deployment's store.s3_endpoint_url), passed down
    rather than set in the process environment, where it would outlive this call."""
    serving = serving or ServingConfig()
    kind = instance_kind(serving.kind)
    if recommender.beam_size != serving.beam_size or recommender.max_k != serving.max_k:
        raise ExportError(
            f"the recommender serves beam {recommender.beam_size} / max_k {recommender.max_k} but serving says "
            f"{serving.beam_size} / {serving.max_k}: load it with the serving settings"
        )
    metadata = {
        "model_version": recommender.model_version,
        "sid_version": recommender.sid_version,
        "instance_kind": kind,
        "dtype": serving.dtype,
        "exported_at": datetime.now(UTC).isoformat(),
        "members": recommender.info.get("members", []),
        **recommender.settings,
    }
    store = ArtifactStore(out_repo, endpoint_url=endpoint_url) if out_repo.startswith("s3://") else None
    repo = Path(out_repo) if store is None else None
    existing = _versions(store, repo, serving.model_name)
    version = version or max(existing, default=0) + 1
    with tempfile.TemporaryDirectory(prefix=".export-", dir=_staging_parent(repo)) as tmp:
        local = build_version_dir(recommender, Path(tmp) / str(version), metadata)
        checked = check_version_dir(local, serving.dtype)
        config = render_config(serving.model_name, kind, version, recommender, serving.dtype)
        if store is None:
            folder = repo / serving.model_name
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / str(version)
            if final.exists():
                shutil.rmtree(final)
            local.rename(final)  # the version appears whole or not at all
            _write_text_atomic(folder / CONFIG_FILE, config)
        else:
            files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: (p.name == LAST_FILE, str(p)))
            for path in files:
                store.put_file(path, f"{serving.model_name}/{version}/{path.relative_to(local).as_posix()}")
            store.put_text(config, f"{serving.model_name}/{CONFIG_FILE}")  # last: pins the complete version
    pruned = prune_partial_versions(out_repo, serving.model_name, endpoint_url)
    return {
        "exported": True,
        "repository": out_repo,
        "model_name": serving.model_name,
        "version": version,
        "pruned_partial_versions": pruned,
        **checked,
        **metadata,
    }


def prune_partial_versions(out_repo: str, model_name: str = "sidrec", endpoint_url: str | None = None) -> list[int]:
    """Remove the version folders that an interrupted export left (no metadata.json, not the served version)."""
    store = ArtifactStore(out_repo, endpoint_url=endpoint_url) if out_repo.startswith("s3://") else None
    repo = Path(out_repo) if store is None else None
    if store is None:
        config_path = repo / model_name / CONFIG_FILE
        current = served_version(config_path.read_text() if config_path.exists() else None)
    else:
        current = served_version(store.get_text(f"{model_name}/{CONFIG_FILE}"))
    orphans = []
    for v in _versions(store, repo, model_name):
        if v == current:
            continue
        complete = (
            (repo / model_name / str(v) / LAST_FILE).exists()
            if store is None
            else store.get_text(f"{model_name}/{v}/{LAST_FILE}") is not None
        )
        if not complete:
            orphans.append(v)
            if store is None:
                shutil.rmtree(repo / model_name / str(v), ignore_errors=True)
            else:
                store.delete_prefix(f"{model_name}/{v}/")
    return orphans


def _versions(store: ArtifactStore | None, repo: Path | None, model_name: str) -> list[int]:
    if store is not None:
        return sorted(int(v) for v in store.list_dirs(model_name) if v.isdigit())
    folder = repo / model_name
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.exists() else []


def _staging_parent(repo: Path | None) -> str | None:
    """Stage beside a local repository, not inside it (Triton would take a staging folder for a model), on the
    same filesystem so that the final rename is atomic."""
    if repo is None:
        return None
    repo.mkdir(parents=True, exist_ok=True)
    return str(repo.resolve().parent)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
