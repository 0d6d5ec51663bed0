"""Prompt parity: the prompt the Triton backend builds for a request is the prompt training built for the same
history and runtime context.

The backend (serving/model_repository/sidrec/1/model.py, as export writes it into a version directory) runs here
under a stand-in for Triton's triton_python_backend_utils, so its own request parsing and its one
Recommender.recommend call build the prompt; the model comes from the product's training step with the context
line, titles, hint line and item tokens on (the options whose prompts differ from the plain one)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from components.config import SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.runtime import recommender as recommender_module
from components.runtime.language import item_token_map
from components.runtime.recommender import Recommender, read_item_tokens
from components.runtime.transitions import TransitionTable
from components.serving.export import export_triton_repository
from components.sids.build import build_sids
from components.training.examples import build_training_texts, training_hints
from components.training.train import tokenize_pairs, train_model


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self):
        return self.array


class _Response:
    def __init__(self, output_tensors=None, error=None):
        self.outputs = {t.name: t.array for t in output_tensors or []}
        self.error = error


class _Error:
    def __init__(self, message):
        self.message = message


def _fake_pb_utils() -> types.ModuleType:
    """The part of triton_python_backend_utils the backend uses (no custom metrics: the backend works without)."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor
    module.InferenceResponse = _Response
    module.TritonError = _Error
    module.get_input_tensor_by_name = lambda request, name: request.get(name)
    module.Logger = types.SimpleNamespace(log_warn=lambda message: None)
    return module


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A model trained with contexts, titles, hint lines and item tokens, exported, and its backend initialized as
    Triton would."""
    root = tmp_path_factory.mktemp("parity")
    catalog, events = generate_synthetic(n_items=60, n_users=40, seed=3, context_signal=True)
    splits = examples_from_events(events, 5)
    sidmap = build_sids(catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), root)
    cfg = load_config(
        None,
        overrides={
            # short enough that some prompts (context line, titles, hint line, history) are cut
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2, "max_length": 48},
            "train": {
                "max_steps": 2,
                "batch_size": 8,
                "torch_threads": 1,
                "context": True,
                "include_titles_in_history": True,
                "hint_successors": 3,
                "item_tokens": 1,
                "weight_sid_title": 0.0,
                "weight_behaviour": 0.0,
            },
            "serving": {"beam_size": 5},
        },
    )
    model_dir = train_model(cfg, sidmap, catalog, splits["train"], None, root / "model")
    exported = export_triton_repository(
        Recommender.from_pretrained(model_dir, beam_size=5), str(root / "repo"), cfg.serving
    )
    version_dir = root / "repo" / cfg.serving.model_name / str(exported["version"])
    sys.modules["triton_python_backend_utils"] = _fake_pb_utils()
    try:
        spec = importlib.util.spec_from_file_location("sidrec_backend_under_test", version_dir / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        served = module.TritonPythonModel()
        served.initialize({"model_config": json.dumps({"parameters": {"dtype": {"string_value": "float32"}}})})
        yield served, cfg, catalog, sidmap, splits, model_dir
    finally:
        sys.modules.pop("triton_python_backend_utils", None)


def _request(history, k=5, at=None, last=None) -> dict:
    request = {
        "HISTORY": _Tensor("HISTORY", np.array([h.encode() for h in history], dtype=np.object_)),
        "K": _Tensor("K", np.array([k], dtype=np.int32)),
    }
    if at is not None:
        request["REQUEST_UNIX"] = _Tensor("REQUEST_UNIX", np.array([at], dtype=np.int64))
        request["LAST_EVENT_UNIX"] = _Tensor("LAST_EVENT_UNIX", np.array([last or 0], dtype=np.int64))
    return request


def test_the_backend_builds_the_prompt_training_built(backend, monkeypatch):
    served, cfg, catalog, sidmap, splits, model_dir = backend
    recommender = served.recommender
    assert recommender.uses_context and recommender.titles  # the exported model kept how it was trained
    built = []
    original = recommender.prompts
    monkeypatch.setattr(recommender, "prompts", lambda h, c=None: built.extend(original(h, c)) or original(h, c))
    rows = splits["test"].head(4)
    requests = [
        _request(row.history, at=int(row.event_timestamp.timestamp()), last=row.last_event_unix)
        for row in rows.itertuples()
    ]
    responses = served.execute(requests)  # one dynamic batch of four requests
    assert all(r.error is None and len(r.outputs["ITEM_IDS"][0]) == 5 for r in responses)
    # the hint lines read the table training wrote beside the model (served rows are not among its counts)
    table = TransitionTable.load(model_dir / "transitions.json")
    tokens = item_token_map(read_item_tokens(model_dir))
    trained = [
        prompt
        for prompt, _ in build_training_texts(
            rows, sidmap, catalog, cfg.train, training_hints(cfg.train, table, counted=False), tokens
        )
    ]  # the task mix is next-item only here, shuffled: compare as sets of exactly four prompts
    assert len(trained) == 4 and sorted(built) == sorted(trained)
    assert all(p.startswith("Context: ") and '"' in p for p in built)  # the context line and the titles
    assert any("\nOften next: <a_" in p for p in built)  # and the hint line
    assert any("><i_" in p for p in built)  # and the item tokens


def test_a_request_without_clocks_gets_the_plain_prompt_and_bad_clocks_fail_alone(backend, monkeypatch):
    served, _, _, _, splits, _ = backend
    recommender = served.recommender
    built = []
    original = recommender.prompts
    monkeypatch.setattr(recommender, "prompts", lambda h, c=None: built.extend(original(h, c)) or original(h, c))
    history = splits["test"].history.iloc[0]
    bad = _request(history, at=-5)
    responses = served.execute([_request(history), bad])
    assert responses[0].error is None and not built[0].startswith("Context: ")
    assert "REQUEST_UNIX must be a positive unix time" in responses[1].error.message and len(built) == 1


def test_a_long_prompt_reaches_the_model_cut_as_training_cut_it(backend, monkeypatch):
    """Token parity: the ids the backend decodes from are the prompt tokens training fit, for prompts over the
    model's max_length too (cut from the left: the history's end and "Next:" stay)."""
    served, cfg, catalog, sidmap, splits, model_dir = backend
    encoded = []
    original = recommender_module.encode_prompts

    def recording(tokenizer, prompts, max_length=recommender_module.MAX_PROMPT_TOKENS):
        ids, mask = original(tokenizer, prompts, max_length)
        encoded.extend(row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True))
        return ids, mask

    monkeypatch.setattr(recommender_module, "encode_prompts", recording)
    rows = splits["test"].head(4)
    served.execute(
        [
            _request(row.history, at=int(row.event_timestamp.timestamp()), last=row.last_event_unix)
            for row in rows.itertuples()
        ]
    )
    table = TransitionTable.load(model_dir / "transitions.json")
    hints = training_hints(cfg.train, table, counted=False)
    pairs = build_training_texts(rows, sidmap, catalog, cfg.train, hints, item_token_map(read_item_tokens(model_dir)))
    trained = [ids[:n_prompt] for ids, n_prompt in tokenize_pairs(served.recommender.tokenizer, pairs, 48)]
    full = served.recommender.tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    assert any(len(ids) > 48 - sidmap.n_levels for ids in full)  # the case under test: prompts that were cut
    assert sorted(encoded) == sorted(trained)
    tail = served.recommender.tokenizer("Next:", add_special_tokens=False)["input_ids"]
    assert all(ids[-len(tail) :] == tail for ids in encoded)
