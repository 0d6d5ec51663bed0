"""Preference alignment after supervised training: softmax-DPO over the model's own constrained beams.

Why: supervised training teaches each target token by token against the whole vocabulary; what is served is the
order of a constrained beam, and its errors are the beam's other items. Here the supervised model decodes a
sample of its training rows as served, and the policy (a copy of it) learns to prefer the true next item over the
beam's best other items (hard negatives), relative to the supervised model as the reference (DPO), as MiniOneRec
and S-DPO do after SFT. With align.teacher_weight > 0 part of the preference goes to a count teacher fit on the
model's own training rows, each row's own example left out (training.teacher: align.teacher "transitions", the
last item's transition chain, or "ranker", the ranking stage's count-feature LightGBM), so what the counts know
moves into the generator instead of a ranker after it.

The loss, per row with candidates c (target first, then the negatives) and h_c = log pi(c|x) - log pi_ref(c|x):
    L = -sum_c q_c log softmax_c(beta * h)      (+ sft_weight * the target's NLL per SID token)
With q one-hot on the target this is S-DPO (Chen et al. 2024, "On Softmax Direct Preference Optimization for
Recommendation"): -log sigmoid(-log sum_neg exp(beta (h_neg - h_target))) is the same expression.

Why not trl: DPOTrainer is pairwise (one rejected per chosen), so ten negatives cost ten forwards of the prompt and
the chosen; it scores completions over the full vocabulary, unlike a model trained with the SID-level softmax; and
GRPOTrainer samples with generate(), which has no trie-constrained beam in transformers 5 (invalid SIDs waste the
CPU budget). Here one prompt pass per row is shared by all candidates through the KV cache (as runtime.beam
decodes), and a candidate's log-probability is normalised exactly as the beam scores it (tested for equality).

The guard: alignment that diverges is stopped and the supervised model kept, with the reason logged and recorded
in the output's sidrec_model.json ("alignment"): a loss that is not finite stops at once; with selection rows, the
aligned model is kept only if it beats the supervised model on align.metric (on the same sample of
eval.max_examples rows training picks epochs on) by more than align.min_gain, and the best epoch is kept.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from components.config import AlignConfig, Config
from components.logs import progress
from components.metrics import hit_rate_ndcg
from components.runtime.backbone import decoder_and_head
from components.runtime.beam import level_logprobs, softmax_kind
from components.runtime.language import SidTrie
from components.runtime.recommender import MODEL_INFO_FILE, Recommender, encode_prompts
from components.runtime.staging import staged_directory
from components.training.teacher import Teacher, build_teacher
from components.training.train import load_trained

log = logging.getLogger(__name__)
RECORD_FILE = "alignment.json"


@dataclass
class Preferences:
    """Mined alignment rows: each row's prompt and candidates (target first), with their reference log-probs and
    the preference q over them."""

    prompts: list[str]
    codes: torch.Tensor  # [N, C, L] SID codes of each candidate (0 where padded)
    valid: torch.Tensor  # [N, C] bool: a real candidate
    reference: torch.Tensor  # [N, C] log pi_ref(candidate | prompt)
    target_rank: list[int]  # the target's rank in the supervised beam (-1: not in it)
    teacher: torch.Tensor  # [N, C] the teacher's preference (a zero row where it knows nothing)

    def preference(self, teacher_weight: float) -> torch.Tensor:
        """q [N, C]: the target (candidate 0), with `teacher_weight` of it moved to the teacher where it knows
        the row (the transition teacher: where it has seen the row's last item)."""
        target = torch.zeros_like(self.teacher)
        target[:, 0] = 1.0
        if teacher_weight <= 0:
            return target
        known = self.teacher.sum(-1, keepdim=True) > 0
        return torch.where(known, (1 - teacher_weight) * target + teacher_weight * self.teacher, target)


# -- scoring -------------------------------------------------------------------------------------------------
def candidate_logprobs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, codes: torch.Tensor, trie: SidTrie
) -> torch.Tensor:
    """log pi(SID | prompt) of each candidate ([B, C]) for left-padded prompts [B, T] and codes [B, C, L],
    differentiable. The prompt is computed once per row; its KV cache is repeated over the candidates, whose
    first L - 1 tokens are fed in one pass, and the output layer runs only where a SID code is scored."""
    base, head = decoder_and_head(model)
    softmax = softmax_kind(model)
    batch, n_cand, n_levels = codes.shape
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=n_levels > 1)
    first = level_logprobs(head, out.last_hidden_state[:, -1], trie, 0, softmax)  # [B, K]
    total = first.gather(1, codes[..., 0])
    if n_levels == 1:
        return total
    cache = out.cache
    cache.batch_repeat_interleave(n_cand)
    steps = n_levels - 1
    tokens = torch.stack([trie.level_token_ids[level][codes[..., level]] for level in range(steps)], -1)
    ones = torch.ones((batch * n_cand, steps), dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([attention_mask.repeat_interleave(n_cand, 0), ones], dim=-1)
    positions = position_ids[:, -1:].repeat_interleave(n_cand, 0) + 1 + torch.arange(steps, device=codes.device)
    hidden = base(
        input_ids=tokens.view(batch * n_cand, steps),
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
    ).last_hidden_state  # [B*C, L-1, H]
    for level in range(1, n_levels):
        logp = level_logprobs(head, hidden[:, level - 1], trie, level, softmax)
        total = total + logp.gather(1, codes[..., level].reshape(-1, 1)).view(batch, n_cand)
    return total


def preference_loss(
    policy: torch.Tensor,
    reference: torch.Tensor,
    valid: torch.Tensor,
    preference: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
    n_levels: int = 1,
) -> torch.Tensor:
    """The listwise DPO loss (module docstring) averaged over rows; candidate 0 is the target (its NLL per SID
    token is the sft term). Padded candidates take no part."""
    logits = beta * (policy - reference)
    logits = logits.masked_fill(~valid, float("-inf"))
    logp = torch.log_softmax(logits, dim=-1).masked_fill(~valid, 0.0)
    loss = -(preference * logp).sum(-1).mean()
    if sft_weight > 0:
        loss = loss + sft_weight * (-policy[:, 0] / n_levels).mean()
    return loss


# -- mining --------------------------------------------------------------------------------------------------
def mine_preferences(
    recommender: Recommender,
    examples: pd.DataFrame,
    cfg: AlignConfig,
    batch_size: int,
    teacher: Teacher | None = None,
) -> Preferences:
    """Decode the rows as served (the recommender's beam), keep the target and the best `negatives` other items,
    and score them all with the (frozen) reference model; with a `teacher` (training.teacher), its preference."""
    sidmap, model = recommender.sidmap, recommender.models[0]
    rows = examples[examples["target"].astype(str).map(sidmap.servable)]
    histories = [list(h) for h in rows["history"]]
    targets = rows["target"].astype(str).tolist()
    beams = recommender.generate(histories, recommender.beam_size, batch_size=batch_size)
    candidates, ranks = [], []
    for target, beam in zip(targets, beams, strict=True):
        items = [item for item, _ in beam]
        ranks.append(items.index(target) if target in items else -1)
        candidates.append([target] + [i for i in items if i != target][: cfg.negatives])
    width = 1 + cfg.negatives
    codes = torch.zeros((len(candidates), width, sidmap.n_levels), dtype=torch.long)
    valid = torch.zeros((len(candidates), width), dtype=torch.bool)
    for r, items in enumerate(candidates):
        codes[r, : len(items)] = torch.tensor([sidmap.codes_of(i) for i in items])
        valid[r, : len(items)] = True
    prompts = recommender.prompts(histories)
    reference = torch.zeros((len(candidates), width))
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            sl = slice(start, start + batch_size)
            ids, mask = encode_prompts(recommender.tokenizer, prompts[sl], recommender.prompt_tokens)
            reference[sl] = candidate_logprobs(model, ids, mask, codes[sl], recommender.trie)
    preference = torch.zeros((len(candidates), width))
    if teacher is not None:
        preference[:, : max(len(c) for c in candidates)] = teacher(histories, candidates, targets)
    return Preferences(prompts, codes, valid, reference.masked_fill(~valid, 0.0), ranks, preference)


def sample_rows(train_examples: pd.DataFrame, cfg: AlignConfig) -> pd.DataFrame:
    """The align.rows training rows alignment mines (all of them when fewer)."""
    if cfg.rows is not None and len(train_examples) > cfg.rows:
        return train_examples.sample(n=cfg.rows, random_state=cfg.seed)
    return train_examples


# -- the stage -----------------------------------------------------------------------------------------------
SelectRows = tuple[list[list[str]], list[str]]  # histories, targets


@dataclass
class AlignResult:
    """What a preference run ended with: why, the weights to keep (None: keep the supervised model), its record."""

    status: str
    state: dict | None
    record: dict = field(default_factory=dict)


def selection_rows(select_examples: pd.DataFrame | None, cfg: Config) -> SelectRows | None:
    """The rows training picks epochs on (the same sample of eval.max_examples rows), or None without any."""
    if select_examples is None or not len(select_examples):
        return None
    n = min(len(select_examples), cfg.eval.max_examples or 500)
    sample = select_examples.sample(n=n, random_state=cfg.train.seed)
    return [list(h) for h in sample["history"]], sample["target"].astype(str).tolist()


def selection_score(recommender: Recommender, rows: SelectRows, batch_size: int) -> dict[str, float]:
    """HR@10 and NDCG@10 of the served top 10 on the selection rows."""
    ranked = [[i for i, _ in row] for row in recommender.recommend(rows[0], 10, batch_size=batch_size)]
    return hit_rate_ndcg(ranked, rows[1], [10])


def train_preferences(
    aligned: Recommender,
    mined: Preferences,
    cfg: AlignConfig,
    select: SelectRows | None = None,
    baseline: dict[str, float] | None = None,
    batch_size: int = 16,
) -> AlignResult:
    """Train aligned.models[0] (in place, from the supervised weights) on the mined preferences for cfg.epochs,
    with the guard: a non-finite loss or gradient stops at once (before the step); with selection rows and the
    supervised model's `baseline` score on them, the best epoch is kept only if it beats the baseline on
    cfg.metric by more than cfg.min_gain."""
    policy, tokenizer, trie = aligned.models[0], aligned.tokenizer, aligned.trie
    device = next(policy.parameters()).device
    n_levels = mined.codes.shape[-1]
    preference = mined.preference(cfg.teacher_weight)
    order = list(range(len(mined.prompts)))
    rng = random.Random(cfg.seed)
    total = math.ceil(len(order) / cfg.batch_size) * cfg.epochs
    trained = [p for p in policy.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    record: dict = {"epochs": []}
    best_state, best_score, step = None, None, 0
    threshold = baseline[cfg.metric] + cfg.min_gain if baseline is not None else None
    bar = progress(total=total, desc="align", unit="step")
    for epoch in range(1, cfg.epochs + 1):
        policy.train()
        rng.shuffle(order)
        losses, first = [], 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            ids, mask = encode_prompts(tokenizer, [mined.prompts[i] for i in idx], aligned.prompt_tokens)
            valid = mined.valid[idx].to(device)
            logp = candidate_logprobs(policy, ids.to(device), mask.to(device), mined.codes[idx].to(device), trie)
            loss = preference_loss(
                logp,
                mined.reference[idx].to(device),
                valid,
                preference[idx].to(device),
                cfg.beta,
                cfg.sft_weight,
                n_levels,
            )
            optim.zero_grad(set_to_none=True)
            norm = torch.tensor(0.0)
            if torch.isfinite(loss):
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
            if not torch.isfinite(loss) or not torch.isfinite(norm):  # stop before the step spoils the weights
                bar.close()
                policy.eval()
                what = f"loss {float(loss)}" if not torch.isfinite(loss) else f"gradient norm {float(norm)}"
                return AlignResult(f"diverged: {what} at step {step + 1} (epoch {epoch})", None, record)
            optim.step()
            schedule.step()
            step += 1
            losses.append(float(loss.detach()))
            first += int((logp.detach().masked_fill(~valid, float("-inf")).argmax(-1) == 0).sum())
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        policy.eval()
        # target_first: the share of rows whose target the policy now ranks first among their candidates
        entry: dict = {"epoch": epoch, "loss": sum(losses) / len(losses), "target_first": first / len(order)}
        if select is not None:
            entry["select"] = selection_score(aligned, select, batch_size)
            score = entry["select"][cfg.metric]
            if (threshold is None or score > threshold) and (best_score is None or score > best_score):
                best_state, best_score = copy.deepcopy(policy.state_dict()), score
                record["best_epoch"] = epoch
        else:
            best_state = copy.deepcopy(policy.state_dict())
            record["best_epoch"] = epoch
        record["epochs"].append(entry)
        log.info("alignment epoch %d: %s", epoch, json.dumps(entry))
    bar.close()
    if select is None:
        return AlignResult("aligned (no selection rows: only the loss was checked)", best_state, record)
    if baseline is None:
        return AlignResult(f"aligned: best {cfg.metric} {best_score:.4f} on the selection rows", best_state, record)
    if best_state is None:
        best = max(e["select"][cfg.metric] for e in record["epochs"])
        return AlignResult(
            f"no gain: best {cfg.metric} {best:.4f} on the selection rows vs the supervised model's "
            f"{baseline[cfg.metric]:.4f} (+ min_gain {cfg.min_gain})",
            None,
            record,
        )
    return AlignResult(
        f"aligned: {cfg.metric} {best_score:.4f} on the selection rows vs the supervised model's "
        f"{baseline[cfg.metric]:.4f}",
        best_state,
        record,
    )


def align_model(
    cfg: Config,
    model_dir: Path,
    train_examples: pd.DataFrame,
    select_examples: pd.DataFrame | None,
    out_dir: Path,
) -> Path:
    """A trained model directory -> the aligned model directory (same layout, written whole), or the supervised
    model unchanged when the guard refuses the alignment; either way the reason is logged and recorded under
    "alignment" in sidrec_model.json and in alignment.json.

    `train_examples`: the rows the model was trained on (align.rows of them are mined; all of them fit the count
    teacher); `select_examples`: rows it was not trained on, sampled as train_model samples them, that pick the
    epoch and guard against a worse model. Without them only a non-finite loss or gradient stops the run (e.g. a
    final model retrained on every split, whose alignment settings were chosen on valid before).
    """
    acfg = cfg.align
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    t0 = time.perf_counter()
    torch.manual_seed(acfg.seed)
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    supervised = Recommender.from_pretrained(model_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    rows = sample_rows(train_examples, acfg)
    teacher = (
        build_teacher(acfg.teacher, train_examples, supervised.sidmap, acfg.teacher_rows, acfg.seed, rows.index)
        if acfg.teacher_weight > 0
        else None
    )
    mined = mine_preferences(supervised, rows, acfg, cfg.eval.batch_size, teacher)
    mine_seconds = time.perf_counter() - t0
    select = selection_rows(select_examples, cfg)
    baseline = selection_score(supervised, select, cfg.eval.batch_size) if select is not None else None
    policy, _ = load_trained(model_dir)
    policy.to(supervised.device)
    aligned = supervised.with_models([policy])
    del supervised  # the reference log-probs are mined: the frozen copy is no longer needed
    result = train_preferences(aligned, mined, acfg, select, baseline, cfg.eval.batch_size)
    in_beam = [r for r in mined.target_rank if r >= 0]
    record = {
        "status": result.status,
        "kept": "aligned" if result.state is not None else "supervised",
        "settings": acfg.model_dump(),
        "rows": len(mined.prompts),
        "target_in_beam": len(in_beam),
        "target_at_rank_1": sum(1 for r in in_beam if r == 0),
        "supervised_select": baseline,
        "mine_seconds": round(mine_seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        **result.record,
    }
    report = log.info if result.state is not None else log.warning
    report("alignment: %s; %s model kept", result.status, record["kept"])
    if result.state is not None:
        policy.load_state_dict(result.state)
    write_aligned(model_dir, out_dir, policy if result.state is not None else None, record)
    return out_dir


def write_aligned(model_dir: Path, out_dir: Path, policy, record: dict) -> Path:
    """out_dir = the supervised model directory, with the aligned weights when `policy` is given, and the record
    (sidrec_model.json "alignment", alignment.json); written whole (a staging directory renamed into place)."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    with staged_directory(out_dir) as staging:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)  # the staging directory exists already
        if policy is not None:
            policy.save_pretrained(staging)
        info_path = staging / MODEL_INFO_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        info["alignment"] = {k: v for k, v in record.items() if k != "epochs"} | {"aligned_from": str(model_dir)}
        info_path.write_text(json.dumps(info, indent=2, default=str))
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str))
    return out_dir
