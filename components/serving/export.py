"""Export a trained model as a new version of a Triton model repository (local path or s3://).

Layout: <repo>/<model_name>/config.pbtxt and <repo>/<model_name>/<N>/{model.py, model/, runtime/, metadata.json}.
A seed ensemble (several model dirs on one SID map) is exported as model/, model_1/, model_2/, ...: the python
backend decodes them together with one beam search (decoding.beam), at N times the compute of one model.
Each export adds version N+1 (Triton's default version policy serves the latest), so a rollback is deleting a
version directory. The version directory is self-contained: weights, tokenizer, SID map, and the sidrec modules
the python backend imports, so the Triton stub's environment needs only torch, transformers, numpy<2 and
lightgbm. With a ranker (`--ranker DIR`) the version also holds ranker/, which the backend then serves.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from components.config import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "serving" / "model_repository" / "sidrec"
RUNTIME_MODULES = [
    "components/__init__.py",
    "components/decoding/__init__.py",
    "components/decoding/trie.py",
    "components/decoding/beam.py",
    "components/decoding/recommend.py",
    "components/decoding/transitions.py",
    "components/ranking/__init__.py",
    "components/ranking/candidates.py",
    "components/ranking/ranker.py",
    "components/ranking/artifact.py",
    "components/model/__init__.py",
    "components/model/prompts.py",
    "components/model/backbone_runtime.py",
    "components/model/vocab.py",
    "components/sids/__init__.py",
    "components/sids/sidmap.py",
]


def _next_version(repo: Path, model_name: str) -> int:
    folder = repo / model_name
    existing = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.exists() else []
    return max(existing, default=0) + 1


def render_config(
    model_name: str,
    instance_kind: str,
    model_version: str,
    sid_version: str,
    beam_size: int = 20,
    max_k: int = 50,
    max_batch_size: int = 32,
    queue_delay_us: int = 2000,
    blend_weight: float = 0.0,
) -> str:
    template = (TEMPLATE / "config.pbtxt.template").read_text()
    body = "\n".join(line for line in template.splitlines() if not line.startswith("# Written by"))
    return body.format(
        model_name=model_name,
        instance_kind=instance_kind,
        model_version=model_version,
        sid_version=sid_version,
        beam_size=beam_size,
        max_k=max_k,
        max_batch_size=max_batch_size,
        queue_delay_us=queue_delay_us,
        blend_weight=blend_weight,
    )


def member_dir_name(index: int) -> str:
    """Where ensemble member `index` lives in a version directory: model/ for the first, model_<i>/ after."""
    return "model" if index == 0 else f"model_{index}"


def _as_list(model_dir: Path | list[Path]) -> list[Path]:
    dirs = [Path(d) for d in model_dir] if isinstance(model_dir, list | tuple) else [Path(model_dir)]
    if not dirs:
        raise ValueError("nothing to export: no model directory given")
    return dirs


def build_version_dir(
    model_dir: Path | list[Path], target: Path, metadata: dict, ranker_dir: Path | None = None
) -> Path:
    """Assemble one self-contained Triton model version directory (one model, or an ensemble's members, and
    the ranker when there is one)."""
    from components.ranking.artifact import DIR_NAME

    target.mkdir(parents=True, exist_ok=True)
    if ranker_dir is not None:
        shutil.copytree(ranker_dir, target / DIR_NAME, dirs_exist_ok=True)
    for index, member in enumerate(_as_list(model_dir)):
        shutil.copytree(
            member,
            target / member_dir_name(index),
            dirs_exist_ok=True,
            # a model dir's own ranker/ is served from the version's ranker/ when asked for, never from here
            ignore=shutil.ignore_patterns("work", "checkpoint.pt", "*.png", "history.json", DIR_NAME),
        )
    for rel in RUNTIME_MODULES:
        dest = target / "runtime" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / rel, dest)
    shutil.copyfile(TEMPLATE / "1" / "model.py", target / "model.py")
    (target / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    return target


def export_triton_repository(
    model_dir: Path | list[Path],
    out_repo: str,
    model_name: str = "sidrec",
    version: int | None = None,
    instance_kind: str | None = None,
    model_version_label: str | None = None,
    beam_size: int = 20,
    blend_weight: float = 0.0,
    ranker_dir: Path | None = None,
) -> dict:
    """Write a new model version into the repository; returns paths and metadata (plain types).

    A list of directories exports a seed ensemble; its members must share the SID map version (else one beam
    search would average the codes of different items), checked here before anything is written.
    `blend_weight` > 0 serves the hybrid: the beam's candidates mixed with the first model's last-item transitions
    (its transitions.json, checked here too; decoding.transitions), the weight the benchmark chose on valid.
    `ranker_dir` serves the ranking stage instead (components.ranking; loaded here first, so a broken or
    foreign directory fails the export, not the server).
    """
    import torch

    from components.model.backbone import model_info
    from components.sids.sidmap import SidMap

    dirs = _as_list(model_dir)
    model_dir = dirs[0]
    kind = instance_kind or ("KIND_GPU" if torch.cuda.is_available() else "KIND_CPU")
    versions = {str(d): SidMap.load(d / "sid_map").version for d in dirs}
    if len(set(versions.values())) > 1:
        raise ValueError(f"ensemble members must share one SID map, got {versions}")
    if not 0.0 <= blend_weight <= 1.0:
        raise ValueError(f"the blend weight must lie in [0, 1], not {blend_weight}")
    if blend_weight > 0:
        from components.decoding.transitions import FILE_NAME, TransitionTable

        TransitionTable.load(dirs[0] / FILE_NAME)  # names the missing file and how to write it
    if ranker_dir is not None:
        from components.ranking.artifact import RankerArtifact

        RankerArtifact.load(Path(ranker_dir))  # names the missing file and how to write it
    sid_version = versions[str(model_dir)]
    label = model_version_label or model_info(model_dir).get("artifact_version") or model_dir.name
    metadata = {
        "model_version": label,
        "sid_version": sid_version,
        "instance_kind": kind,
        "exported_at": datetime.now(UTC).isoformat(),
        "source": str(model_dir),
        "members": [str(d) for d in dirs],
        "blend_weight": blend_weight,
        "ranker": str(ranker_dir) if ranker_dir is not None else None,
    }
    config = render_config(model_name, kind, label, sid_version, beam_size=beam_size, blend_weight=blend_weight)
    if out_repo.startswith("s3://"):
        return _export_s3(dirs, out_repo, model_name, version, config, metadata, ranker_dir)
    repo = Path(out_repo)
    version = version or _next_version(repo, model_name)
    staging = Path(tempfile.mkdtemp(dir=repo.parent if repo.parent.exists() else None, prefix=".export-"))
    build_version_dir(dirs, staging / str(version), metadata, ranker_dir)
    (repo / model_name).mkdir(parents=True, exist_ok=True)
    final = repo / model_name / str(version)
    if final.exists():
        shutil.rmtree(final)
    (staging / str(version)).rename(final)  # the version appears whole or not at all
    shutil.rmtree(staging, ignore_errors=True)
    (repo / model_name / "config.pbtxt").write_text(config)
    return {"exported": True, "repository": str(repo), "model_name": model_name, "version": version, **metadata}


def _export_s3(
    model_dirs: list[Path],
    out_repo: str,
    model_name: str,
    version: int | None,
    config: str,
    metadata: dict,
    ranker_dir: Path | None = None,
) -> dict:
    """Same layout on S3; files first, config.pbtxt last (Triton polls the repository)."""
    from components.store.artifacts import ArtifactStore

    store = ArtifactStore(out_repo)
    existing = [int(v) for v in store._list_dirs(model_name) if v.isdigit()]
    version = version or max(existing, default=0) + 1
    with tempfile.TemporaryDirectory() as tmp:
        local = build_version_dir(model_dirs, Path(tmp) / str(version), metadata, ranker_dir)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            store.put_file(path, f"{model_name}/{version}/{path.relative_to(local).as_posix()}")
    store.put_text(config, f"{model_name}/config.pbtxt")
    return {"exported": True, "repository": out_repo, "model_name": model_name, "version": version, **metadata}
