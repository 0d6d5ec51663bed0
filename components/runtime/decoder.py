"""Decoder runners for constrained beam search: the prompt once, then one step per SID level.

Beam search (runtime.beam) needs four things of a model: encode the prompts (prefill), give each row `n` beams
(expand), feed one or a few tokens per beam (step), and keep the beams the search chose (reorder). Two runners
provide them:

- HFRunner: any causal LM, through its own forward and cache object. The cache repeats each prompt's keys and
  values for every beam, concatenates every step onto them and re-gathers all of them after every level.
- LlamaRunner: Llama-family decoders (SmolLM2, the tiny test and demo models). Each layer runs the model's own
  modules (norms, projections, rotary embedding, MLP), so weights and numerics are the model's, but attention
  keeps the prompt's keys/values ONCE per row and the beams attend to them by broadcasting; only the few
  generated tokens' keys/values are per beam (gathered on reorder: a few KB). The last layer computes only the
  prompt's last position (the only one the search reads), and none of the generic forward's mask building,
  output capturing or cache bookkeeping runs. Same results as HFRunner (tests/runtime), measured faster in
  docs/speed.md.

`runner_for(model)` picks the lean runner where it applies and the HF one elsewhere (e.g. Qwen3's q/k norms).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")
LEAN_MODEL_TYPES = ("llama",)  # attention = q/k/v/o projections + rotary, nothing else (no q/k norm, no window)


class Runner(Protocol):
    """What beam search asks of a model: see the module docstring."""

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """Encode left-padded prompts; the final hidden state of each prompt's last position, [B, H]."""
        ...

    def expand(self, beams: int) -> None:
        """Every prompt row becomes `beams` identical beam rows (row b -> rows b*beams .. b*beams+beams-1)."""
        ...

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Feed tokens [N, T] at positions [N, T] to the N beam rows; final hidden states [N, T, H]."""
        ...

    def reorder(self, order: torch.Tensor) -> None:
        """Keep beam rows `order` (indices into the current rows, grouped by prompt row; the count may change)."""
        ...


class HFRunner:
    """Any causal LM through its own forward and cache (the prompt cache repeated per beam)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.cache = None
        self.mask: torch.Tensor | None = None

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        out = self.base(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=None, use_cache=True
        )
        self.cache, self.mask = out.cache, attention_mask
        return out.last_hidden_state[:, -1]

    def expand(self, beams: int) -> None:
        self.cache.batch_repeat_interleave(beams)
        self.mask = self.mask.repeat_interleave(beams, 0)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(tokens.shape, dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=-1)
        out = self.base(
            input_ids=tokens, attention_mask=self.mask, position_ids=positions, cache=self.cache, use_cache=True
        )
        self.cache = out.cache
        return out.last_hidden_state

    def reorder(self, order: torch.Tensor) -> None:
        self.cache.reorder_cache(order)
        self.mask = self.mask[order]


def lean_supported(model: torch.nn.Module) -> bool:
    """Whether LlamaRunner computes exactly what this model's own forward computes."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in LEAN_MODEL_TYPES:
        return False
    base = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if base is None or layers is None or not hasattr(base, "rotary_emb") or model.training:
        return False
    if _sharded(model):  # FSDP2 gathers a layer's weights in its forward hooks, which the lean runner bypasses
        return False
    attn = layers[0].self_attn
    return all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")) and not any(
        hasattr(attn, n) for n in ("q_norm", "k_norm", "sliding_window")
    )


def _sharded(model: torch.nn.Module) -> bool:
    """Whether the weights are FSDP2 shards (DTensors): only the model's own forward may read them."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding (rotate_half form) of x [N, heads, T, d] with cos/sin [N, T, d]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LlamaRunner:
    """Llama-family decoding with the prompt's keys/values shared by its beams (module docstring)."""

    def __init__(self, model: torch.nn.Module) -> None:
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.embed, self.norm, self.rotary, self.layers = base.embed_tokens, base.norm, base.rotary_emb, base.layers
        attn = self.layers[0].self_attn
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.heads = model.config.num_attention_heads
        self.kv_heads = model.config.num_key_value_heads
        self.prompt_k: list[torch.Tensor] = []  # per layer [B, kv_heads, P, d]
        self.prompt_v: list[torch.Tensor] = []
        self.prompt_bias: torch.Tensor | None = None  # [B, 1, 1, P]: 0 for prompt tokens, -inf for padding
        self.gen_k: list[torch.Tensor] = []  # per layer [N, kv_heads, t, d]: the beams' generated tokens
        self.gen_v: list[torch.Tensor] = []

    def _qkv(self, attn, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        n, t = x.shape[:2]
        q = attn.q_proj(x).view(n, t, -1, self.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(n, t, -1, self.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(n, t, -1, self.head_dim).transpose(1, 2)
        return _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin), v

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        h = self.embed(input_ids)
        cos, sin = self.rotary(h, position_ids)
        batch, length = input_ids.shape
        keep = attention_mask.bool()
        causal = torch.ones((length, length), dtype=torch.bool, device=h.device).tril()
        # a padding query sees itself too: a row with no visible key would turn into NaN keys/values downstream
        allowed = (causal & keep[:, None, :]) | torch.eye(length, dtype=torch.bool, device=h.device)
        allowed = allowed.unsqueeze(1)  # [B, 1, P, P]
        self.prompt_k, self.prompt_v = [], []
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            q, k, v = self._qkv(attn, layer.input_layernorm(h), cos, sin)
            self.prompt_k.append(k)
            self.prompt_v.append(v)
            mask = allowed
            if index == last:  # only the last position is read after the last layer
                h, q, mask = h[:, -1:], q[:, :, -1:], allowed[:, :, -1:]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)
            h = h + attn.o_proj(out.transpose(1, 2).reshape(h.shape[0], h.shape[1], -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        bias = torch.zeros(keep.shape, dtype=h.dtype, device=h.device).masked_fill(~keep, NEG_INF)
        self.prompt_bias = bias.view(batch, 1, 1, length)
        self.gen_k = self.gen_v = []
        return self.norm(h)[:, -1]

    def expand(self, beams: int) -> None:
        batch, _, _, d = self.prompt_k[0].shape
        empty = self.prompt_k[0].new_empty((batch * beams, self.kv_heads, 0, d))
        self.gen_k = [empty] * len(self.layers)
        self.gen_v = [empty] * len(self.layers)

    def _attend(self, q, pk, pv, gk, gv) -> torch.Tensor:
        """Beam queries q [N, H, T, d] over their prompt's keys (shared, [B, kv, P, d]) and their own generated
        keys ([N, kv, t, d], the last T of them the queries' own tokens, causal among themselves)."""
        n, _, t_new, d = q.shape
        batch, kv, length, _ = pk.shape
        beams, group = n // batch, self.heads // self.kv_heads
        # prompt part: the beams of a row are extra query rows of that row
        qp = q.reshape(batch, beams, kv, group * t_new, d).transpose(1, 2).reshape(batch, kv, -1, d)
        sp = torch.matmul(qp, pk.transpose(-1, -2)) * self.scaling + self.prompt_bias  # [B, kv, beams*g*T, P]
        sp = sp.view(batch, kv, beams, group * t_new, length).transpose(1, 2).reshape(n, kv, group * t_new, length)
        qg = q.reshape(n, kv, group * t_new, d)
        sg = torch.matmul(qg, gk.transpose(-1, -2)) * self.scaling  # [N, kv, g*T, t]
        generated = gk.shape[2]
        if t_new > 1:  # new token j sees the generated tokens before it and itself
            seen = torch.ones((t_new, generated), dtype=torch.bool, device=q.device).tril(generated - t_new)
            sg = sg.masked_fill(~seen.repeat(group, 1), NEG_INF)
        probs = torch.softmax(torch.cat([sp, sg], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        pp = probs[..., :length].reshape(batch, beams, kv, group * t_new, length).transpose(1, 2)
        out = torch.matmul(pp.reshape(batch, kv, -1, length), pv)  # [B, kv, beams*g*T, d]
        out = out.view(batch, kv, beams, group * t_new, d).transpose(1, 2).reshape(n, kv, group * t_new, d)
        out = out + torch.matmul(probs[..., length:], gv)
        return out.reshape(n, self.heads, t_new, d)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        cos, sin = self.rotary(h, positions)
        n, t_new = tokens.shape
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            q, k, v = self._qkv(attn, layer.input_layernorm(h), cos, sin)
            gk = torch.cat([self.gen_k[index], k], dim=2)
            gv = torch.cat([self.gen_v[index], v], dim=2)
            self.gen_k[index], self.gen_v[index] = gk, gv
            out = self._attend(q, self.prompt_k[index], self.prompt_v[index], gk, gv)
            h = h + attn.o_proj(out.transpose(1, 2).reshape(n, t_new, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.norm(h)

    def reorder(self, order: torch.Tensor) -> None:
        self.gen_k = [k.index_select(0, order) for k in self.gen_k]
        self.gen_v = [v.index_select(0, order) for v in self.gen_v]


def runner_for(model: torch.nn.Module, kind: str = "auto") -> Runner:
    """A fresh runner for one search: "lean" (Llama family only), "hf", or "auto" = lean where it applies."""
    if kind not in ("auto", "lean", "hf"):
        raise ValueError(f"unknown decoder runner {kind!r}: auto, lean or hf")
    if kind == "hf" or (kind == "auto" and not lean_supported(model)):
        return HFRunner(model)
    if not lean_supported(model):
        raise ValueError(f"the lean runner supports {LEAN_MODEL_TYPES} decoders in eval mode, not this model")
    return LlamaRunner(model)
