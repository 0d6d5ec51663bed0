"""Shared fixtures: project-local HOME/caches, free ports, a tiny deployment config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Nothing writes into the real $HOME, even when pytest is run without scripts/env.sh.
for _var, _sub in {
    "HOME": ".home",
    "XDG_CACHE_HOME": ".cache",
    "MPLCONFIGDIR": ".cache/matplotlib",
    "HF_HOME": ".cache/huggingface",
    "AIRFLOW_HOME": ".airflow",
}.items():
    if not os.environ.get(_var, "").startswith(str(ROOT)):
        os.environ[_var] = str(ROOT / _sub)
        Path(os.environ[_var]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SIDREC_ROOT", str(ROOT))


@pytest.fixture
def tiny_config(tmp_path):
    """The tiny deployment with its run root and artifact store inside tmp_path."""
    from components.config import load_config

    return load_config(
        ROOT / "configs" / "tiny.yaml",
        overrides={"run_root": str(tmp_path / "runs"), "store": {"root": str(tmp_path / "artifacts")}},
    )


@pytest.fixture
def free_port():
    from components.local.procs import free_port as _free_port

    return _free_port
