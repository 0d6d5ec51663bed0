"""Training: a generic completion-only causal-LM trainer, and the recommender's train_model on top of it.

The trainer computes the transformer once per batch and the (large) output layer only at the completion
positions: for next-item examples that is 3 positions out of ~35, which is most of the saving on CPU where
the 49k-token output layer dominates. Stage 1 (token warm-up) trains only the new SID embedding rows, stage 2
trains everything (or LoRA adapters + embeddings with peft). Checkpoints (model, optimizer, step) allow resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from components.config import Config, TrainConfig
from components.logs import progress
from components.metrics import hit_rate_ndcg
from components.runtime.backbone import decoder_and_head, load_backbone, neutral_generation_config, token_logits
from components.runtime.beam import softmax_kind
from components.runtime.content import ContentIndex
from components.runtime.context import contexts_of
from components.runtime.language import item_token_map, sid_token_ids
from components.runtime.recommender import (
    MODEL_INFO_FILE,
    SID_MAP_DIR,
    Recommender,
    model_info,
    prompt_settings,
    read_item_tokens,
    write_prompt_files,
)
from components.runtime.staging import staged_directory
from components.runtime.transitions import TransitionTable
from components.sids.sidmap import SidMap
from components.training import distributed
from components.training.examples import (
    Teacher,
    build_training_texts,
    content_teacher,
    count_teacher,
    distilled_soft_targets,
    item_token_items,
    merge_soft_targets,
    sibling_soft_targets,
    training_hints,
    with_recent_copies,
)
from components.training.vocab import add_item_tokens, add_sid_tokens

log = logging.getLogger(__name__)


def tokenize_pairs(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per pair; prompts are cut from the left so the completion always fits."""
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    out = []
    for p, c in zip(prompts, completions, strict=True):
        p = p[-max(1, max_length - len(c)) :] if p else p
        out.append((p + c, len(p)))
    return out


def _batch(
    items: list[tuple[list[int], int]], pad_id: int, learn_in_prompt: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, mask and labels (-100 outside the completion, and outside `learn_in_prompt` tokens)."""
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, (ids, n_prompt) in enumerate(items):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        labels[r, max(n_prompt, 1) : len(ids)] = torch.tensor(ids[max(n_prompt, 1) :])
        if learn_in_prompt is not None and n_prompt > 1:
            prompt = input_ids[r, 1:n_prompt]
            labels[r, 1:n_prompt] = torch.where(torch.isin(prompt, learn_in_prompt), prompt, -100)
    return input_ids, mask, labels


Soft = list[tuple[int, list[int], list[float]]]  # (position in ids, token ids, weights) of one example


def soft_positions(
    tokenizer, examples: list[tuple[str, str]], data: list[tuple[list[int], int]], soft_targets: dict
) -> list[Soft | None]:
    """Per tokenized example, its soft targets (training.examples.distilled_soft_targets: one {token: weight} per
    completion token) placed at the completion tokens' positions in its ids; None where it has none."""
    out: list[Soft | None] = []
    for pair, (ids, n_prompt) in zip(examples, data, strict=True):
        levels = soft_targets.get(tuple(pair))
        if not levels:
            out.append(None)
            continue
        n_completion = len(ids) - n_prompt
        out.append(
            [
                (len(ids) - n_completion + j, tokenizer.convert_tokens_to_ids(list(level)), list(level.values()))
                for j, level in enumerate(levels[:n_completion])
                if level
            ]
        )
    return out


def _soft_batch(items: list[Soft | None], width: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """[batch, width, K] token ids and weights of the soft targets at each position (weight 0 where none), or
    None for a batch without any."""
    k = max((len(ids) for soft in items if soft for _, ids, _ in soft), default=0)
    if k == 0:
        return None
    soft_ids = torch.zeros((len(items), width, k), dtype=torch.long)
    soft_w = torch.zeros((len(items), width, k), dtype=torch.float32)
    for r, soft in enumerate(items):
        for position, ids, weights in soft or []:
            soft_ids[r, position, : len(ids)] = torch.tensor(ids)
            soft_w[r, position, : len(ids)] = torch.tensor(weights)
    return soft_ids, soft_w


def completion_loss(
    model,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    sid_table: torch.Tensor | None = None,
    reduction: str = "mean",
    soft: tuple[torch.Tensor, torch.Tensor] | None = None,
    smoothing: tuple[torch.Tensor, float] | None = None,
    across_levels: bool = False,
) -> torch.Tensor:
    """Next-token cross-entropy over completion tokens only (output layer at those positions only): their mean,
    or with reduction "sum" their sum (what a distributed step divides by the global token count).

    With `sid_table` ([levels, codes] token ids, -1 padding, see language.sid_token_ids) a SID target is scored
    against its own level's codes only; other targets (titles) keep the full-vocabulary softmax. With `soft`
    (_soft_batch: token ids and weights per position) a position's target is 1 - sum(weights) on its label and
    the weights on those tokens (count distillation); positions without weights keep the one-hot target.
    With `smoothing` (the SID token table, eps) a SID target keeps 1 - eps of its target and spreads eps evenly
    over its own level's codes (label smoothing inside the level: the beam ranks codes of one level against each
    other, so that is where a flatter target acts; other targets are unchanged).
    With `sid_table` and `across_levels` a SID target is scored against all SID tokens of every level instead
    (train.sid_vocab_softmax): the full softmax's competition among SID tokens without the ~48k text rows of the
    output layer, which no SID target needs.
    """
    base, head = decoder_and_head(model)
    hidden = base(input_ids=input_ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    select = target != -100
    hidden, target = hidden[:, :-1][select], target[select]
    soft_ids = soft_w = None
    if soft is not None:
        soft_ids, soft_w = (t[:, 1:][select] for t in soft)
    if sid_table is None:
        if soft_ids is None and smoothing is None:
            return torch.nn.functional.cross_entropy(head(hidden).float(), target, reduction=reduction)
        logp = torch.log_softmax(head(hidden).float(), -1)
        nll = _soft_nll(logp, target, soft_ids, soft_w)
        if smoothing is not None:
            nll = _smoothed(nll, logp, target, *smoothing)
        return nll.sum() if reduction == "sum" else nll.mean()
    eps = smoothing[1] if smoothing is not None else 0.0
    total = _sid_loss(head, hidden, target, sid_table, soft_ids, soft_w, eps, across_levels)
    return total if reduction == "sum" else total / max(int(target.numel()), 1)


def _soft_nll(
    logp: torch.Tensor, target: torch.Tensor, soft_ids: torch.Tensor | None, soft_w: torch.Tensor | None
) -> torch.Tensor:
    """Per row: -(1 - sum w) log p(target) - sum_k w_k log p(soft_k), over log-probabilities `logp` [n, V]."""
    gold = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    if soft_ids is None:
        return gold
    return (1 - soft_w.sum(1)) * gold - (soft_w * logp.gather(1, soft_ids)).sum(1)


def _smoothed(nll: torch.Tensor, logp: torch.Tensor, target: torch.Tensor, table: torch.Tensor, eps: float):
    """(1 - eps) * nll + eps * (mean NLL of the target's level codes) for SID targets of `table`; other rows keep
    `nll`. `logp` [n, V] are full-vocabulary log-probabilities."""
    out = nll
    for level_ids in table:
        level_ids = level_ids[level_ids >= 0]
        here = (target.unsqueeze(1) == level_ids).any(1)
        if here.any():
            uniform = -logp[:, level_ids].mean(1)
            out = torch.where(here, (1 - eps) * nll + eps * uniform, out)
    return out


class CompletionLoss(torch.nn.Module):
    """The model and its loss as one module, so that DistributedDataParallel sees the forward pass it syncs."""

    def __init__(
        self,
        model,
        sid_table: torch.Tensor | None,
        smoothing: tuple[torch.Tensor, float] | None = None,
        across_levels: bool = False,
    ) -> None:
        super().__init__()
        self.model, self.sid_table, self.smoothing = model, sid_table, smoothing
        self.across_levels = across_levels

    def forward(self, input_ids, mask, labels, reduction: str = "mean", soft=None) -> torch.Tensor:
        return completion_loss(
            self.model,
            input_ids,
            mask,
            labels,
            self.sid_table,
            reduction,
            soft,
            self.smoothing,
            across_levels=self.across_levels,
        )


def _sid_loss(
    head,
    hidden: torch.Tensor,
    target: torch.Tensor,
    sid_table: torch.Tensor,
    soft_ids: torch.Tensor | None = None,
    soft_w: torch.Tensor | None = None,
    eps: float = 0.0,
    across_levels: bool = False,
) -> torch.Tensor:
    """The summed cross-entropy of SID targets over their own level's codes, or with `across_levels` over all SID
    tokens of every level (and over the full vocabulary for other targets, e.g. titles); soft targets (token ids
    of the same level) and label smoothing (eps over the target's own level's codes) as in completion_loss."""
    total = hidden.new_zeros((), dtype=torch.float32)
    if across_levels:
        vocab = sid_table[sid_table >= 0].unique()  # sorted: a token id maps to its column by a search
        is_sid = torch.isin(target, vocab)
        if is_sid.any():
            logp = torch.log_softmax(token_logits(head, hidden[is_sid], vocab).float(), -1)
            column = torch.searchsorted(vocab, target[is_sid])
            codes = weights = None
            if soft_ids is not None:  # soft targets are SID tokens of the target's level; padding has weight 0
                codes = torch.searchsorted(vocab, soft_ids[is_sid]).clamp(max=len(vocab) - 1)
                weights = torch.where(torch.isin(soft_ids[is_sid], vocab), soft_w[is_sid], 0.0)
            nll = _soft_nll(logp, column, codes, weights)
            if eps > 0:
                columns = torch.where(sid_table >= 0, torch.searchsorted(vocab, sid_table.clamp(min=0)), -1)
                nll = _smoothed(nll, logp, column, columns, eps)
            total = total + nll.sum()
    else:
        is_sid = torch.zeros_like(target, dtype=torch.bool)
        for level_ids in sid_table:
            level_ids = level_ids[level_ids >= 0]
            match = target.unsqueeze(1) == level_ids  # [n, codes]: which code of this level each target is
            here = match.any(1)
            if not here.any():
                continue
            is_sid |= here
            logp = torch.log_softmax(token_logits(head, hidden[here], level_ids).float(), -1)
            codes = weights = None
            if soft_ids is not None:  # token ids -> this level's code indices (weights of other tokens dropped)
                found = soft_ids[here].unsqueeze(-1) == level_ids  # [n, K, codes]
                codes, weights = found.long().argmax(-1), torch.where(found.any(-1), soft_w[here], 0.0)
            nll = _soft_nll(logp, match[here].long().argmax(1), codes, weights)
            total = total + ((1 - eps) * nll - eps * logp.mean(-1)).sum()
    if (~is_sid).any():
        rest = head(hidden[~is_sid]).float()
        total = total + torch.nn.functional.cross_entropy(rest, target[~is_sid], reduction="sum")
    return total


@contextlib.contextmanager
def training_dropout(model, p: float):
    """Dropout on embeddings, attention/MLP block outputs and attention weights while training, as hooks.

    Hooks (not config changes) so the saved model is the plain backbone architecture; nothing stays after.
    """
    if p <= 0:
        yield
        return
    base, _ = decoder_and_head(model)

    def drop(module, args, output):
        if isinstance(output, tuple):
            return (torch.nn.functional.dropout(output[0], p, module.training), *output[1:])
        return torch.nn.functional.dropout(output, p, module.training)

    modules = [model.get_input_embeddings()]
    attentions = []
    for layer in base.layers:
        modules += [layer.self_attn, layer.mlp]
        if hasattr(layer.self_attn, "attention_dropout"):
            attentions.append((layer.self_attn, layer.self_attn.attention_dropout))
            layer.self_attn.attention_dropout = p
    handles = [m.register_forward_hook(drop) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for attention, value in attentions:
            attention.attention_dropout = value


def _save_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history if "loss" in h]
    ax.plot(steps, [h["loss"] for h in history if "loss" in h], label="train loss (smoothed)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    evals = [h for h in history if "valid" in h]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([h["step"] for h in evals], [h["valid"] for h in evals], "o-", color="tab:orange", label="valid HR@10")
        ax2.set_ylabel("valid HR@10")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def past_patience(history: list[dict], patience: int | None) -> bool:
    """The last `patience` valid scores in `history` all came after the best one (none beat it).

    Read from the history, not a counter, so a run resumed from its checkpoint stops where it would have."""
    if patience is None:
        return False
    scores = [h["valid"] for h in history if "valid" in h]
    best_at = max(range(len(scores)), key=lambda i: (scores[i], -i), default=0)
    return len(scores) - 1 - best_at >= patience


def train_causal_lm(
    model,
    tokenizer,
    examples: list[tuple[str, str]],
    cfg: TrainConfig,
    out_dir: Path,
    valid_fn: Callable[[object], float] | None = None,
    new_token_ids: list[int] | None = None,
    max_length: int = 256,
    sid_ids: torch.Tensor | None = None,
    soft_targets: dict | None = None,
) -> dict:
    """Completion-only training with token warm-up, grad accumulation, exact checkpoints/resume and curves, in one
    process or under torchrun (training.distributed: DDP over the same model, each global batch split by rank,
    rank 0 evaluates and checkpoints).

    valid_fn(model) -> score (higher is better) runs after each epoch; the best epoch's weights are kept. With
    cfg.ema_decay both are the weights' moving average, not the live weights.
    sid_ids (language.sid_token_ids) is the SID token table: with cfg.sid_softmax SID targets use the SID-level
    softmax over it, with cfg.sid_vocab_softmax the softmax over all its tokens, with cfg.label_smoothing > 0
    (which requires it) the smoothing spreads over its levels.
    soft_targets ({(prompt, completion): one {token: weight} per completion token}, training.examples.
    distilled_soft_targets) move those weights of an example's target onto those tokens (TrainConfig.count_distill,
    content_distill, sibling_smoothing).
    Only the parameters that require grad when training starts are trained (a LoRA model's adapters and new SID
    rows; everything for a full fine-tune); during the token warm-up only the embedding rows among them.
    Returns {"history", "best_valid", "train_seconds", "tokens", "steps", ...}.
    """
    with training_dropout(model, cfg.dropout):
        return _train(
            model,
            tokenizer,
            examples,
            cfg,
            out_dir,
            valid_fn,
            new_token_ids,
            max_length,
            sid_ids,
            soft_targets,
        )


def _train(
    model, tokenizer, examples, cfg, out_dir, valid_fn, new_token_ids, max_length, sid_ids, soft_targets
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.torch_threads:  # for callers of train_causal_lm (reasoning); train_model has set it before its init
        torch.set_num_threads(cfg.torch_threads)
    ctx, device = distributed.init(cfg.device)
    model.to(device)
    sid_ids = sid_ids.to(device) if sid_ids is not None else None
    sid_table = sid_ids if cfg.sid_softmax or cfg.sid_vocab_softmax else None
    if cfg.sid_vocab_softmax and sid_ids is None:
        raise ValueError("train.sid_vocab_softmax needs the SID token table (sid_ids) to normalise over")
    data = tokenize_pairs(tokenizer, examples, max_length)
    soft = soft_positions(tokenizer, examples, data, soft_targets) if soft_targets else [None] * len(data)
    n_batches = math.ceil(len(data) / cfg.batch_size)
    steps_per_epoch = max(1, n_batches // cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, int(steps_per_epoch * cfg.epochs))  # the schedule's length
    stop_steps = (
        total_steps if cfg.stop_epochs is None else min(total_steps, max(1, int(steps_per_epoch * cfg.stop_epochs)))
    )
    warmup_steps = int(total_steps * cfg.warmup_epochs / max(cfg.epochs, 1e-9)) if new_token_ids else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    learn_in_prompt = None  # the SID tokens inside the prompt (history_loss), never the input-only item tokens
    if cfg.history_loss and new_token_ids:
        learn_in_prompt = sid_ids[sid_ids >= 0].flatten() if sid_ids is not None else torch.tensor(new_token_ids)

    embed = model.get_input_embeddings().weight
    old_rows = None
    if new_token_ids and embed.requires_grad:  # a full embedding matrix trains: keep its old rows in warm-up
        old_rows = torch.ones(embed.shape[0], dtype=torch.bool, device=device)
        old_rows[torch.tensor(new_token_ids)] = False
        old_values = embed.detach()[old_rows].clone()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    trained = [p for name, p in model.named_parameters() if name in trainable]  # model order: stable float sums

    def set_stage(warm: bool) -> None:
        for name, p in model.named_parameters():
            embedding = "embed_tokens" in name or "lm_head" in name or "trainable_tokens" in name
            p.requires_grad_(name in trainable and (not warm or embedding))

    smoothing = None
    if cfg.label_smoothing > 0:
        if sid_ids is None:
            raise ValueError("train.label_smoothing needs the SID token table (sid_ids) to smooth over")
        smoothing = (sid_ids, cfg.label_smoothing)
    loss_module = CompletionLoss(model, sid_table, smoothing, cfg.sid_vocab_softmax)
    ddp = loss_module
    sharded = ctx.distributed and cfg.sharding == "fsdp"
    if sharded:  # -- train.sharding: fsdp (FSDP2, training.distributed.shard) ---------------------------------
        distributed.check_fsdp(cfg.lora, warmup_steps, cfg.checkpoint_every, cfg.ema_decay is not None)
        ddp = distributed.shard(loss_module, model)
        trained = [p for name, p in model.named_parameters() if name in trainable]  # now the sharded parameters
    elif ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        ddp = DistributedDataParallel(loss_module, device_ids=ids, find_unused_parameters=warmup_steps > 0)
    optim = torch.optim.AdamW(
        trained,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (
            min(1.0, (s + 1) / max(1, total_steps // 20))
            * max(0.05, 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total_steps)))))
        ),
    )
    # the weight average (train.ema_decay): what valid scores and the run keeps; the live weights only train
    ema = None
    if cfg.ema_decay is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        ema.eval()
    kept = ema.module if ema is not None else model  # the weights valid_fn scores and the run returns
    ckpt = out_dir / "checkpoint.pt"
    step, history, best, best_state, tokens, smoothed = 0, [], -1.0, None, 0, None
    rng = random.Random(cfg.seed)
    epoch_state, position = rng.getstate(), 0  # the shuffle's state at the current epoch's start, rows done
    if ckpt.exists():  # resume exactly where the checkpoint was taken
        state = torch.load(ckpt, weights_only=True, map_location=device)  # tensors and plain types only
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        schedule.load_state_dict(state["schedule"])
        step, history, best, tokens, smoothed = (state[k] for k in ("step", "history", "best", "tokens", "smoothed"))
        epoch_state, position = _rng_state(state["epoch_state"]), state["position"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("best_state") is not None:
            best_state = state["best_state"]
        if ema is not None:
            ema.load_state_dict(state["ema"])
        log.info("resumed from step %d", step)
    t0 = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16_autocast)
    bar = progress(total=stop_steps, initial=step, desc="train", unit="step")
    chunk = cfg.batch_size * cfg.grad_accum
    model.train()
    while step < stop_steps:
        rng.setstate(epoch_state)
        order = list(range(len(data)))
        rng.shuffle(order)
        for start in range(position, max(1, len(order) - chunk + 1), chunk):
            if step >= stop_steps:
                break
            set_stage(step < warmup_steps)
            optim.zero_grad(set_to_none=True)
            loss_value = 0.0
            for micro in range(cfg.grad_accum):
                idx = order[start + micro * cfg.batch_size : start + (micro + 1) * cfg.batch_size]
                if not idx:
                    continue
                mine = idx[ctx.rank :: ctx.world_size]
                batch = _batch([data[i] for i in mine], pad, learn_in_prompt)
                input_ids, mask, labels = (t.to(device, non_blocking=True) for t in batch)
                soft_batch = _soft_batch([soft[i] for i in mine], input_ids.shape[1])
                if soft_batch is not None:
                    soft_batch = tuple(t.to(device, non_blocking=True) for t in soft_batch)
                tokens += int(batch[1].sum())  # counted on the host copy: no device sync
                with autocast:
                    if ctx.distributed:  # the global mean: local sum over all ranks' completion tokens
                        local = int((batch[2][:, 1:] != -100).sum())
                        count = distributed.all_sum([local], device)[0]
                        loss = (
                            ddp(input_ids, mask, labels, "sum", soft_batch)
                            * ctx.world_size
                            / max(count, 1)
                            / cfg.grad_accum
                        )
                    else:
                        loss = ddp(input_ids, mask, labels, "mean", soft_batch) / cfg.grad_accum
                loss.backward()
                value = float(loss.detach())
                loss_value += distributed.all_sum([value], device)[0] / ctx.world_size if ctx.distributed else value
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optim.step()
            if step < warmup_steps and old_rows is not None:
                with torch.no_grad():  # only the new SID rows move during warm-up (undo decay/momentum)
                    embed[old_rows] = old_values
            if ema is not None:
                ema.update_parameters(model)
            schedule.step()
            step += 1
            position = start + chunk
            smoothed = loss_value if smoothed is None else 0.95 * smoothed + 0.05 * loss_value
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.3f}")
            if step % 10 == 0 or step == stop_steps:
                history.append({"step": step, "loss": smoothed})
            end_of_epoch = step % steps_per_epoch == 0 or step == stop_steps
            if valid_fn is not None and end_of_epoch:
                model.eval()
                with distributed.gathered(ddp) if sharded else contextlib.nullcontext():  # fsdp: every rank decodes
                    score = distributed.from_main(float(valid_fn(kept)) if ctx.is_main or sharded else None)
                model.train()
                history.append({"step": step, "valid": score})
                log.info("step %d valid %.4f", step, score)
                if score > best:
                    best, best_state = score, copy.deepcopy(kept.state_dict())
                if past_patience(history, cfg.patience):
                    log.info("step %d: no better valid score in %d evaluations, stopping early", step, cfg.patience)
                    stop_steps = step  # both loops end here; the best weights are restored below
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and ctx.is_main:
                state = {
                    "model": model.state_dict(),
                    "optim": optim.state_dict(),
                    "schedule": schedule.state_dict(),
                    "step": step,
                    "history": history,
                    "best": best,
                    "best_state": best_state,
                    "ema": ema.state_dict() if ema is not None else None,
                    "tokens": tokens,
                    "smoothed": smoothed,
                    "epoch_state": list(epoch_state[1]),
                    "position": position,
                    "torch_rng": torch.get_rng_state(),
                }
                torch.save(state, ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)  # a checkpoint is whole or absent
        else:  # the epoch ran out: the next one shuffles on from here
            epoch_state, position = rng.getstate(), 0
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif ema is not None:  # no valid scores: the run ends on the average
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    seconds = time.perf_counter() - t0
    if ctx.is_main:
        _save_curve(history, out_dir / "training_curve.png")
        if ckpt.exists():
            ckpt.unlink()  # finished: the saved model is the artifact
    return {
        "history": history,
        "best_valid": best,
        "train_seconds": round(seconds, 1),
        "tokens": int(distributed.all_sum([tokens], device)[0]),
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "tokens_per_second": round(distributed.all_sum([tokens], device)[0] / max(seconds, 1e-9), 1),
        "world_size": ctx.world_size,
        "parameters_per_rank": distributed.local_parameters(model),  # fsdp: about 1/world_size of the model
    }


def _rng_state(values: list[int]) -> tuple:
    """Python's random state from the ints a checkpoint keeps of it (version 3, Mersenne Twister, no gauss)."""
    return (3, tuple(int(v) for v in values), None)


def with_model_softmax(train: TrainConfig, model) -> TrainConfig:
    """`train` with the SID softmax the trained `model` records (runtime.beam.softmax_kind). Why: continuing a
    trained model (a warm start, the reasoning fine-tune) must train its SID targets as its beam decodes them,
    whatever the deployment file now says."""
    kind = softmax_kind(model)
    return train.model_copy(update={"sid_softmax": kind == "sid_level", "sid_vocab_softmax": kind == "sid_vocab"})


def distillation_teachers(
    cfg: Config, examples: pd.DataFrame, sidmap: SidMap, catalog: pd.DataFrame
) -> list[tuple[Teacher, float]]:
    """The soft-target teachers the configuration asks for, with their shares: the count teacher over these
    training examples (train.count_distill) and the content teacher over the catalog's content embeddings, the
    encoder the SIDs are built with (train.content_distill; sids.embeddings caches them per text)."""
    teachers: list[tuple[Teacher, float]] = []
    if cfg.train.count_distill > 0:
        teachers.append((count_teacher(examples, sidmap), cfg.train.count_distill))
    if cfg.train.content_distill > 0:
        index = ContentIndex.from_catalog(catalog, cfg.sids.content_encoder)
        teachers.append((content_teacher(index, cfg.train.content_neighbours), cfg.train.content_distill))
    return teachers


def train_model(
    cfg: Config,
    sidmap: SidMap,
    catalog: pd.DataFrame,
    train_examples: pd.DataFrame,
    select_examples: pd.DataFrame | None,
    out_dir: Path,
    init_from: Path | None = None,
    on_valid: Callable[[pd.DataFrame, list[list[str]]], None] | None = None,
) -> Path:
    """Backbone + SID vocabulary + task mix -> a trained model directory (runtime.recommender's layout).

    `select_examples` (rows the model does not train on) pick the best epoch by HR@10 on a sample of
    eval.max_examples of them, decoded as served (runtime.Recommender); they must not be the rows a promotion
    gate later scores the model on. `init_from`: a trained model directory of the same SID lineage to continue
    from (a warm start: its SID tokens, softmax kind and weights are kept; no token warm-up). The directory is
    written whole (a staging directory renamed into place). `on_valid(sample, top10_lists)` is called after
    each end-of-epoch score with the sampled rows and their decoded lists, for experiments that read per-row
    results (experiments/epoch_pick_on_valid.py compares epoch-pick rules with it); training ignores it.
    """
    out_dir = Path(out_dir)
    # before any numeric work: the SID rows' codebook start (a PCA projection) is a float reduction whose last
    # bits follow the thread count, so a run set later got other weights as the first run of a process (the
    # default: every core) than as a later one, and another machine's core count changed them too
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    if init_from is not None:
        model, tokenizer = load_trained(Path(init_from))
        new_ids = None  # the SID rows are trained already
        # the model's softmax and its own item tokens (newer items are written by their SID), with their setting
        items = read_item_tokens(Path(init_from))
        recorded = prompt_settings(model_info(Path(init_from)).get("train"))["item_tokens"] if items is not None else 0
        train = with_model_softmax(cfg.train, model).model_copy(update={"item_tokens": recorded})
        cfg = cfg.model_copy(update={"train": train})
    else:
        model, tokenizer = load_backbone(cfg.model)
        new_ids = add_sid_tokens(model, tokenizer, sidmap, seed=cfg.train.seed, init=cfg.train.sid_init)
        model.config.sid_level_softmax = cfg.train.sid_softmax  # decoding must normalise as training did
        model.config.sid_vocab_softmax = cfg.train.sid_vocab_softmax
        items = item_token_items(train_examples, sidmap, cfg.train.item_tokens) if cfg.train.item_tokens else None
        if items:
            new_ids += add_item_tokens(model, tokenizer, sidmap, items, seed=cfg.train.seed)
    item_tokens = item_token_map(items) if items else None
    sid_ids = sid_token_ids(tokenizer, sidmap)  # [levels, codes]: the SID-level softmax's and smoothing's table
    titles = dict(zip(catalog["item_id"].astype(str), catalog["title"].fillna("").astype(str), strict=True))
    # the chain a served hybrid blends with and served hint lines read, fit on exactly these training examples
    transitions = TransitionTable.from_examples(train_examples["history"], train_examples["target"].astype(str))
    hints = training_hints(cfg.train, transitions, counted=True)
    # the newest rows repeated for the task mix only: the chain and the count targets count each example once
    weighted = with_recent_copies(train_examples, cfg.train.recent_copies)
    texts = build_training_texts(weighted, sidmap, catalog, cfg.train, hints, item_tokens)
    history_titles = titles if cfg.train.include_titles_in_history else None
    soft_targets = merge_soft_targets(
        distilled_soft_targets(
            train_examples,
            sidmap,
            distillation_teachers(cfg, train_examples, sidmap, catalog),
            history_titles,
            cfg.train.context,
            hints,
            item_tokens,
        ),
        sibling_soft_targets(texts, sidmap, cfg.train.sibling_smoothing),
    )
    if cfg.train.lora:  # adapters + the SID rows (all of them when warm-starting: they keep learning)
        rows = new_ids or [int(i) for i in sid_ids.flatten() if i >= 0]
        model = with_lora(model, cfg.train.lora_rank, rows)
    valid_fn = None
    if select_examples is not None and len(select_examples):
        sample = select_examples.sample(
            n=min(len(select_examples), cfg.eval.max_examples or 500), random_state=cfg.train.seed
        )
        histories = [list(h) for h in sample["history"]]
        targets = sample["target"].astype(str).tolist()
        contexts = contexts_of(sample) if cfg.train.context else None

        def valid_fn(m) -> float:
            recommender = Recommender(
                [m],
                tokenizer,
                sidmap,
                beam_size=cfg.serving.beam_size,
                titles=history_titles,
                uses_context=cfg.train.context,
                transitions=transitions,
                # the prompt settings (hint line) and the prompt length it is trained on
                info={"train": cfg.train.model_dump(), "model": cfg.model.model_dump()},
                item_tokens=items,
            )
            rows = recommender.recommend(histories, 10, contexts=contexts, batch_size=cfg.eval.batch_size)
            ranked = [[i for i, _ in row] for row in rows]
            if on_valid is not None:
                on_valid(sample, ranked)
            return hit_rate_ndcg(ranked, targets, [10])["HR@10"]

    stats = train_causal_lm(
        model,
        tokenizer,
        texts,
        cfg.train,
        out_dir / "work",
        valid_fn,
        new_ids,
        cfg.model.max_length,
        sid_ids,
        soft_targets,
    )
    full_state = None
    if cfg.train.sharding == "fsdp" and distributed.context().distributed:  # every rank sends rank 0 its shards
        full_state = distributed.full_state_dict(model)
    if not distributed.context().is_main:  # rank 0 writes the model; the others wait for it
        distributed.barrier()
        return out_dir
    if cfg.train.lora:
        model = model.merge_and_unload()
    # the work/ folder (checkpoints, curve) lives inside out_dir: it is read before the swap and goes with it
    with staged_directory(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=full_state)  # full_state: the gathered fsdp weights, else None
        tokenizer.save_pretrained(tmp)
        sidmap.save(tmp / SID_MAP_DIR)
        # served prompts are built from the same titles, item tokens and transitions as training's prompts
        write_prompt_files(tmp, history_titles, items, transitions)
        info = {
            "backbone": cfg.model.backbone,
            "model": cfg.model.model_dump(),
            "sid_version": sidmap.version,
            "warm_start_from": str(init_from) if init_from is not None else None,
            "examples": len(texts),
            "train": cfg.train.model_dump(),
            **{k: v for k, v in stats.items() if k != "history"},
        }
        (tmp / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
        (tmp / "history.json").write_text(json.dumps(stats["history"]))
        curve = out_dir / "work" / "training_curve.png"
        if curve.exists():
            (tmp / "training_curve.png").write_bytes(curve.read_bytes())
    distributed.barrier()
    return out_dir


def load_trained(model_dir: Path):
    """(model, tokenizer) of a trained model directory, in float32 on the CPU, ready to train further."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    neutral_generation_config(model)
    return model, tokenizer


def with_lora(model, rank: int, new_token_ids: list[int]):
    """LoRA adapters on every projection, plus the new SID tokens' embedding (and output) rows: the only
    parameters that train. The pretrained weights, old token rows included, stay frozen (peft's trainable token
    indices handle a tied output layer)."""
    from peft import LoraConfig, get_peft_model

    rows = {"embed_tokens": list(new_token_ids)}
    if not model.config.tie_word_embeddings:
        rows["lm_head"] = list(new_token_ids)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        trainable_token_indices=rows,
    )
    return get_peft_model(model, config)
