"""The recommender: histories in, item ids out — one object used by evaluation, the promotion gate, the ranker's
training, think-ahead, the Triton backend and the library alike.

A Recommender holds one trained model or a seed ensemble (models of one SID map decoded together by one beam
search, runtime.beam), the SID map and its trie, and the optional served stages: the hybrid's last-item
transition blend (runtime.transitions) or the learnt ranking stage (runtime.ranker). As Hugging Face's model
classes do, the class owns its directory: `from_pretrained` reads it, `save_pretrained` writes it, and no other
module parses it.

Two layouts are read (the second is written):
- a trained model directory (training.train.train_model): the HF weights and tokenizer, sid_map/,
  transitions.json, sidrec_model.json (how it was trained, which versions), titles.json when its prompts carry
  titles, and ranker/ when the training step learnt a ranking stage for it;
- a recommender directory: recommender.json (format, member directories, served settings, versions) beside the
  members' model directories model/, model_1/, ... and ranker/ when the ranking stage is served. A Triton model
  version is exactly such a directory plus the backend's model.py and a copy of the components package.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from components.errors import SidrecError
from components.runtime.backbone import neutral_generation_config, resolve_device, resolve_dtype
from components.runtime.beam import constrained_beam_search
from components.runtime.context import RequestContext, context_texts
from components.runtime.language import SidTrie, format_prompt, item_token_map, sid_token_ids
from components.runtime.ranker import DIR_NAME as RANKER_DIR
from components.runtime.ranker import RankerArtifact
from components.runtime.staging import staged_directory
from components.runtime.transitions import FILE_NAME as TRANSITIONS_FILE
from components.runtime.transitions import TransitionTable, blend
from components.sids.sidmap import SidMap, lineage

FORMAT = "sidrec-recommender/1"
RECOMMENDER_FILE = "recommender.json"
MODEL_INFO_FILE = "sidrec_model.json"
TITLES_FILE = "titles.json"
ITEM_TOKENS_FILE = "item_tokens.json"  # the items with their own prompt token, in token order (train.item_tokens)
SID_MAP_DIR = "sid_map"
MAX_PROMPT_TOKENS = 512
DEFAULT_MAX_LENGTH = 256  # model.max_length of records that predate it (ModelConfig's default then and now)
Candidates = list[list[tuple[str, float]]]  # per row: (item_id, score), best first


class RecommenderError(SidrecError):
    """A recommender directory that is missing or inconsistent, or a request it cannot serve."""


def model_info(model_dir: Path) -> dict:
    """What a trained model directory records about itself (sidrec_model.json; {} when absent)."""
    path = Path(model_dir) / MODEL_INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def member_dir_name(index: int) -> str:
    """Where ensemble member `index` lives in a recommender directory: model/ for the first, model_<i>/ after."""
    return "model" if index == 0 else f"model_{index}"


def encode_prompts(tokenizer, prompts: list[str], max_length: int = MAX_PROMPT_TOKENS):
    """Left-padded ids and attention mask for a batch of prompts (decoding appends at the right end). A prompt
    longer than `max_length` tokens keeps its last ones, as training cut it (training.train.tokenize_pairs): the
    end ("Next:") is what the model continues from."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    enc = tokenizer(
        prompts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=max_length
    )
    return enc.input_ids, enc.attention_mask


def servable(sidmap: SidMap, prefixes: Sequence[Sequence[int]] | None = None) -> Callable[[str], bool]:
    """Which items a served stage may add beside the beam: items of this SID map that are not retired (counts can
    name items the catalog has since dropped), inside the row's think-ahead prefixes when it has any."""
    wanted = [tuple(int(c) for c in p) for p in prefixes or []]

    def ok(item: str) -> bool:
        if not sidmap.servable(item):
            return False
        if not wanted:
            return True
        codes = sidmap.codes_of(item)
        return any(codes[: len(p)] == p for p in wanted)

    return ok


def _load_member(model_dir: Path, device: torch.device, dtype: torch.dtype):
    """(model, tokenizer, sidmap) of one trained model directory, checked before use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    missing = [n for n in ("config.json", SID_MAP_DIR) if not (model_dir / n).exists()]
    if missing:
        raise RecommenderError(
            f"{model_dir}: not a trained model directory (missing {', '.join(missing)}); train one with "
            "`sidrec training run` or fetch a published version with `sidrec store fetch model`"
        )
    sidmap = SidMap.load(model_dir / SID_MAP_DIR)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except Exception as exc:  # safetensors, tokenizers and transformers each raise their own error types
        raise RecommenderError(
            f"{model_dir}: the weights or tokenizer do not load ({type(exc).__name__}: {exc}); train or fetch it again"
        ) from exc
    tokenizer.padding_side = "left"
    info = model_info(model_dir)
    if info.get("sid_version") is not None and lineage(info["sid_version"]) != sidmap.lineage:
        raise RecommenderError(
            f"{model_dir}: trained on SID map {info['sid_version']} but its sid_map/ is {sidmap.version}, another "
            "build: a model only decodes with maps of the lineage it was trained on"
        )
    try:
        sid_token_ids(tokenizer, sidmap)
    except ValueError as exc:
        raise RecommenderError(f"{model_dir}: {exc}") from exc
    neutral_generation_config(model)
    return model.eval().to(device), tokenizer, sidmap


class Recommender:
    """One model or a seed ensemble with its SID map, trie and served stages (module docstring)."""

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        tokenizer,
        sidmap: SidMap,
        *,
        transitions: TransitionTable | None = None,
        ranker: RankerArtifact | None = None,
        beam_size: int = 20,
        max_k: int = 50,
        blend_weight: float = 0.0,
        titles: dict[str, str] | None = None,
        info: dict | None = None,
        uses_context: bool | None = None,
        item_tokens: Sequence[str] | None = None,
    ) -> None:
        self.models = list(models)
        if not self.models:
            raise RecommenderError("a recommender needs at least one model")
        if beam_size < 1 or max_k < 1:
            raise RecommenderError(f"beam_size ({beam_size}) and max_k ({max_k}) must be >= 1")
        if not 0.0 <= blend_weight <= 1.0:
            raise RecommenderError(f"serving.blend_weight must lie in [0, 1], not {blend_weight}")
        if blend_weight > 0 and transitions is None:
            raise RecommenderError("serving.blend_weight > 0 needs the model's transitions.json (training writes it)")
        if ranker is not None and ranker.beam_size is not None and ranker.beam_size != beam_size:
            raise RecommenderError(
                f"the ranker was learnt on beams of {ranker.beam_size}, but serving.beam_size is {beam_size}: "
                f"set serving.beam_size: {ranker.beam_size} or learn the ranker again with beam size {beam_size}"
            )
        self.tokenizer, self.sidmap = tokenizer, sidmap
        self.transitions, self.ranker = transitions, ranker
        self.beam_size, self.max_k, self.blend_weight = beam_size, max_k, blend_weight
        self.titles = titles
        # the items written with their own token in prompts (item_tokens.json), as the model was trained
        self.item_tokens = list(item_tokens) if item_tokens is not None else None
        self._item_token_map = item_token_map(self.item_tokens) if self.item_tokens else None
        self.info = dict(info or {})
        # whether the prompts carry the runtime context line: as the model was trained (sidrec_model.json)
        trained = prompt_settings(self.info.get("train"))
        self.uses_context = bool(trained["context"]) if uses_context is None else uses_context
        # the prompts' hint line (how many successors, of how many recent items): as the model was trained
        self.hint_successors, self.hint_window = int(trained["hint_successors"]), int(trained["hint_window"])
        if self.hint_successors > 0 and transitions is None:
            raise RecommenderError(
                "this model's prompts carry hint lines (train.hint_successors) read from its transitions.json, "
                "and none was given: load it with Recommender.from_pretrained, or train it again"
            )
        if int(trained["item_tokens"]) > 0 and self.item_tokens is None:
            raise RecommenderError(
                f"this model's prompts carry item tokens (train.item_tokens) listed in its {ITEM_TOKENS_FILE}, and "
                "none was given: load it with Recommender.from_pretrained, or train it again"
            )
        # prompts are cut to the token count training read (from the left, keeping the end)
        self.prompt_tokens = prompt_token_budget(self.info, sidmap.n_levels)
        self.trie = SidTrie.from_sidmap(sidmap, tokenizer).to(self.device)

    def with_models(self, models: Sequence[torch.nn.Module]) -> Recommender:
        """Other weights (e.g. a policy being aligned) behind this recommender's SID map, prompts (titles,
        context line, hint line and the transitions it reads) and beam, with no served stage: the raw model,
        reading exactly the prompts this one's model was trained on."""
        return Recommender(
            models,
            self.tokenizer,
            self.sidmap,
            transitions=self.transitions,
            beam_size=self.beam_size,
            max_k=self.max_k,
            titles=self.titles,
            info=self.info,
            uses_context=self.uses_context,
            item_tokens=self.item_tokens,
        )

    # -- identity --------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.models[0].parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.models[0].parameters()).dtype

    @property
    def sid_version(self) -> str:
        return self.sidmap.version

    @property
    def model_version(self) -> str | None:
        """The artifact version this recommender was published as (None for a local, unpublished directory)."""
        return self.info.get("model_version") or self.info.get("artifact_version")

    @property
    def settings(self) -> dict:
        """The served settings, as recommender.json records them."""
        return {
            "beam_size": self.beam_size,
            "max_k": self.max_k,
            "blend_weight": self.blend_weight,
            "ranker": self.ranker is not None,
        }

    # -- directory -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | Sequence[str | Path],
        *,
        device: str = "cpu",
        dtype: str = "float32",
        beam_size: int | None = None,
        max_k: int | None = None,
        blend_weight: float | None = None,
        ranker: bool | str | Path | None = None,
    ) -> Recommender:
        """Load a recommender directory, a trained model directory, or several model directories of one SID map
        (a seed ensemble). Settings left None come from recommender.json, else the defaults (beam 20, max_k 50,
        no blend). `ranker`: None = as saved (none for model directories), True = the first model directory's
        ranker/, a path = that ranker directory, False = none."""
        paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
        if not paths:
            raise RecommenderError("nothing to load: no directory given")
        saved: dict = {}
        if len(paths) == 1 and (paths[0] / RECOMMENDER_FILE).exists():
            root = paths[0]
            saved = json.loads((root / RECOMMENDER_FILE).read_text())
            if saved.get("format") != FORMAT:
                raise RecommenderError(f"{root / RECOMMENDER_FILE}: not a sidrec recommender (format {FORMAT!r})")
            paths = [root / m for m in saved["members"]]
            if ranker is None:
                ranker = root / RANKER_DIR if saved.get("ranker") else False
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        loaded = [_load_member(p, torch_device, torch_dtype) for p in paths]
        _, tokenizer, sidmap = loaded[0]
        _check_members(paths, loaded)
        info = {**model_info(paths[0]), **{k: v for k, v in saved.items() if k.endswith("_version")}}
        blend_weight = saved.get("blend_weight", 0.0) if blend_weight is None else blend_weight
        hinted = prompt_settings(info.get("train"))["hint_successors"] > 0
        transitions = TransitionTable.load(paths[0] / TRANSITIONS_FILE) if blend_weight > 0 or hinted else None
        ranker_dir = paths[0] / RANKER_DIR if ranker is True else (Path(ranker) if ranker else None)
        titles = None
        if (paths[0] / TITLES_FILE).exists():
            titles = json.loads((paths[0] / TITLES_FILE).read_text())
        item_tokens = read_item_tokens(paths[0])
        return cls(
            [model for model, _, _ in loaded],
            tokenizer,
            sidmap,
            transitions=transitions,
            ranker=RankerArtifact.load(ranker_dir) if ranker_dir is not None else None,
            beam_size=beam_size or saved.get("beam_size", 20),
            max_k=max_k or saved.get("max_k", 50),
            blend_weight=blend_weight,
            titles=titles,
            info={**info, "members": [str(p) for p in paths]},
            item_tokens=item_tokens,
        )

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the recommender directory whole (a staging directory renamed into place): each member's
        weights, tokenizer, SID map, record (and transitions, titles), the ranker, and recommender.json with the
        served settings, the versions and `extra`. Weights are written in float32 whatever they were loaded in."""
        path = Path(path)
        with staged_directory(path) as staging:
            members = []
            for index, model in enumerate(self.models):
                name = member_dir_name(index)
                target = staging / name
                model.to(torch.float32).save_pretrained(target)
                model.to(self.dtype)
                self.tokenizer.save_pretrained(target)
                self.sidmap.save(target / SID_MAP_DIR)
                record = {k: v for k, v in self.info.items() if k != "members"}
                (target / MODEL_INFO_FILE).write_text(json.dumps(record, indent=2, default=str))
                self.save_prompt_files(target, transitions=index == 0)
                members.append(name)
            if self.ranker is not None:
                self.ranker.save(staging / RANKER_DIR)
            spec = {
                "format": FORMAT,
                "members": members,
                **self.settings,
                "sid_version": self.sid_version,
                "model_version": self.model_version,
                **(extra or {}),
            }
            (staging / RECOMMENDER_FILE).write_text(json.dumps(spec, indent=2, default=str))
        return path

    def save_prompt_files(self, model_dir: str | Path, transitions: bool = True) -> None:
        """Write what this recommender's prompts are built from into a model directory: the titles, the item
        token list and (with `transitions`) the transition table (or a copy of the loaded directory's, kept so
        that the blend can be switched on later). A model directory continuing this one's model (the reasoner)
        needs them to build the same prompts when loaded."""
        model_dir = Path(model_dir)
        write_prompt_files(model_dir, self.titles, self.item_tokens, self.transitions if transitions else None)
        source = Path(self.info.get("members", [""])[0]) / TRANSITIONS_FILE
        if transitions and self.transitions is None and source.is_file():
            shutil.copyfile(source, model_dir / TRANSITIONS_FILE)

    # -- recommending ----------------------------------------------------------------------------------------
    def prompts(
        self, histories: Sequence[Sequence[str]], contexts: Sequence[RequestContext | None] | None = None
    ) -> list[str]:
        """The prompts training built for these histories and request contexts (runtime.language.format_prompt,
        runtime.context.context_text, the hint line from the model's transitions); a model trained without
        contexts ignores them."""
        lines = context_texts(contexts if self.uses_context else None, len(histories))
        return [
            format_prompt(list(h), self.sidmap, self.titles, c, hints=self._hints(h), item_tokens=self._item_token_map)
            for h, c in zip(histories, lines, strict=True)
        ]

    def _hints(self, history: Sequence[str]) -> list[str] | None:
        if self.hint_successors <= 0 or self.transitions is None:  # __init__ refuses hints without a table
            return None
        return self.transitions.top_successors(history, self.hint_successors, self.hint_window)

    def generate(
        self,
        histories: Sequence[Sequence[str]],
        width: int,
        prefixes: Sequence[Sequence[Sequence[int]] | None] | None = None,
        contexts: Sequence[RequestContext | None] | None = None,
        batch_size: int | None = None,
    ) -> Candidates:
        """The models' constrained beam: `width` (item, log-prob) per history, valid SIDs only, best first (fewer
        when a narrow think-ahead prefix holds fewer items). No served stage is applied."""
        batch_size = batch_size or max(1, len(histories))
        out: Candidates = []
        for start in range(0, len(histories), batch_size):
            rows = slice(start, start + batch_size)
            ids, mask = encode_prompts(
                self.tokenizer,
                self.prompts(histories[rows], contexts[rows] if contexts else None),
                self.prompt_tokens,
            )
            result = constrained_beam_search(
                self.models if len(self.models) > 1 else self.models[0],
                ids.to(self.device),
                mask.to(self.device),
                self.trie,
                max(width, self.beam_size),
                width,
                [list(p) if p else None for p in prefixes[rows]] if prefixes is not None else None,
            )
            out += [
                [(self.trie.item_ids[i], s) for i, s in zip(items, scores, strict=True) if i >= 0]
                for items, scores in zip(result.items.tolist(), result.scores.tolist(), strict=True)
            ]
        return out

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        prefixes: Sequence[Sequence[Sequence[int]] | None] | None = None,
        contexts: Sequence[RequestContext | None] | None = None,
        batch_size: int = 16,
    ) -> Candidates:
        """Top-k (item_id, score) per history, unique, valid catalog items only, best first: the beam of
        max(beam_size, k), then the ranking stage or the hybrid's blend when served.

        Scores are log-probs of the SIDs; with the blend the log of the blended probability; with the ranker the
        ranker's scores. Rows with think-ahead prefixes only complete those prefixes, and served stages add only
        items inside them (servable)."""
        if not 1 <= k <= self.max_k:
            raise RecommenderError(f"k must lie in [1, {self.max_k}] (serving.max_k), not {k}")
        if prefixes is not None and len(prefixes) != len(histories):
            raise RecommenderError(f"{len(prefixes)} prefix lists for {len(histories)} histories")
        staged = self.ranker is not None or self.blend_weight > 0
        width = max(self.beam_size, k)
        out: Candidates = []
        for start in range(0, len(histories), batch_size):
            rows = slice(start, start + batch_size)
            batch = [list(h) for h in histories[rows]]
            batch_prefixes = prefixes[rows] if prefixes is not None else None
            beams = self.generate(batch, width if staged else k, batch_prefixes, contexts[rows] if contexts else None)
            if not staged:
                out += beams
                continue
            rules = [servable(self.sidmap, p) for p in (batch_prefixes or [None] * len(batch))]
            if self.ranker is not None:
                out += self.ranker.rank(batch, beams, k, self.sidmap, rules)
            else:
                out += blend(beams, batch, self.transitions, self.blend_weight, k, rules)
        return out


PROMPT_SETTINGS = {
    "context": False,
    "include_titles_in_history": False,
    "hint_successors": 0,
    "hint_window": 1,
    "item_tokens": 0,
}


def read_item_tokens(model_dir: Path) -> list[str] | None:
    """The item token list of a model directory (None when it has none): what its prompts write as "<i_N>"."""
    path = Path(model_dir) / ITEM_TOKENS_FILE
    if not path.exists():
        return None
    items = json.loads(path.read_text())
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise RecommenderError(f"{path}: not a list of item ids; train the model again")
    return items


def write_prompt_files(
    model_dir: Path,
    titles: dict[str, str] | None,
    item_tokens: Sequence[str] | None,
    transitions: TransitionTable | None,
) -> None:
    """Write into a model directory what its prompts are built from, each when given: the titles (titles.json),
    the item token list (item_tokens.json, read_item_tokens) and the transition table (its hint lines and the
    served blend). The one writer of these files, for training, saved recommenders and the reasoner."""
    model_dir = Path(model_dir)
    if titles is not None:
        (model_dir / TITLES_FILE).write_text(json.dumps(titles))
    if item_tokens is not None:
        (model_dir / ITEM_TOKENS_FILE).write_text(json.dumps(list(item_tokens)))
    if transitions is not None:
        transitions.save(model_dir / TRANSITIONS_FILE)


def prompt_token_budget(info: dict, n_levels: int) -> int:
    """How many prompt tokens a model read in training: model.max_length less its completion (one SID, a token
    per level; training.train.tokenize_pairs cuts every prompt to this from the left). Serving cuts the same
    way, so a long history reads as it did in training."""
    max_length = (info.get("model") or {}).get("max_length") or DEFAULT_MAX_LENGTH
    return max(1, int(max_length) - n_levels)


def prompt_settings(train: dict | None) -> dict:
    """The train settings that shape a model's prompts, from its record's `train` section, defaults filled in
    (older records lack newer settings)."""
    train = train or {}
    out = {key: train.get(key) if train.get(key) is not None else default for key, default in PROMPT_SETTINGS.items()}
    if not out["hint_successors"]:
        out["hint_window"] = 1  # no hint line: its window shapes nothing
    return out


def _check_members(paths: list[Path], loaded: list) -> None:
    """Members decode together only with the same SID map and the same SID token ids: else averaging their
    next-code distributions would mix different items. They read one prompt, so they must have been trained
    on the same prompt settings (context line, titles, hint line, item tokens)."""
    _, tokenizer, sidmap = loaded[0]
    ids = sid_token_ids(tokenizer, sidmap)
    first = model_info(paths[0])
    prompts = {**prompt_settings(first.get("train")), "max_length": prompt_token_budget(first, sidmap.n_levels)}
    for path in paths[1:]:
        info = model_info(path)
        other = {**prompt_settings(info.get("train")), "max_length": prompt_token_budget(info, sidmap.n_levels)}
        if other != prompts:
            raise RecommenderError(
                f"{path} cannot decode with {paths[0]}: trained on other prompts ({other} vs "
                f"{prompts}); ensemble models trained with the same train.context, "
                f"train.include_titles_in_history, train.hint_successors, train.hint_window, train.item_tokens and "
                f"model.max_length"
            )
    for path, (_, other_tokenizer, other_map) in zip(paths[1:], loaded[1:], strict=True):
        if (
            other_map.version != sidmap.version
            or len(other_tokenizer) != len(tokenizer)
            or not torch.equal(sid_token_ids(other_tokenizer, other_map), ids)
        ):
            raise RecommenderError(
                f"{path} cannot decode with {paths[0]}: SID map {other_map.version} vs {sidmap.version}, "
                f"vocabulary {len(other_tokenizer)} vs {len(tokenizer)} tokens"
            )
    items = read_item_tokens(paths[0])
    for path in paths[1:]:
        if read_item_tokens(path) != items:  # one prompt: "<i_N>" must name the same item for every member
            raise RecommenderError(
                f"{path} cannot decode with {paths[0]}: their item tokens ({ITEM_TOKENS_FILE}) differ; ensemble "
                "models trained on the same examples with the same train.item_tokens"
            )
