"""Minimal loader for serving runtimes (Triton's python backend): torch + transformers only, no project config."""

from __future__ import annotations

from pathlib import Path


def load_runtime_model(model_dir: str | Path, device=None):
    """(model, tokenizer, sidmap) from an exported model dir, in eval mode on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.sids.sidmap import SidMap

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    dtype = torch.float16 if device is not None and torch.device(device).type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    if device is not None:
        model.to(device)
    return model, tokenizer, SidMap.load(model_dir / "sid_map")
