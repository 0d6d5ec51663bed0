"""Triton python-backend model: batched constrained beam search over Semantic IDs.

Follows Triton's python_backend layout (initialize / execute / finalize). All requests of a dynamic batch go
through ONE prompt pass and one decode step per SID level. The version directory is self-contained: weights,
tokenizer and SID map in ./model, and the few sidrec modules the search needs in ./runtime. A seed ensemble
adds ./model_1, ./model_2, ...: all are loaded and decoded together by the same beam search. With the
blend_weight parameter > 0 it serves the hybrid: the beam's candidates mixed with ./model/transitions.json
(decoding.transitions), exactly as the library's recommend_items does. A ./ranker directory (`sidrec export
triton --ranker`) serves the ranking stage instead: the beam pooled with co-occurrence candidates and
reordered by its LightGBM ranker (components.ranking), again as recommend_items does.
"""

import json
import os
import re
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "runtime"))
        import torch

        from components.decoding.transitions import FILE_NAME, TransitionTable
        from components.decoding.trie import SidTrie
        from components.model.backbone_runtime import load_runtime_model

        self.torch = torch
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.beam_size = int(params.get("beam_size", "20"))
        self.max_k = int(params.get("max_k", "50"))
        self.blend_weight = float(params.get("blend_weight", "0"))
        use_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args.get('model_instance_device_id', '0')}" if use_gpu else "cpu")
        members = sorted(
            (name for name in os.listdir(here) if re.fullmatch(r"model(_\d+)?", name)),
            key=lambda name: int(name.partition("_")[2] or 0),
        )
        loaded = [load_runtime_model(os.path.join(here, name), self.device) for name in members]
        _, self.tokenizer, self.sidmap = loaded[0]
        self.model = loaded[0][0] if len(loaded) == 1 else [model for model, _, _ in loaded]
        self.trie = SidTrie.from_sidmap(self.sidmap, self.tokenizer).to(self.device)
        self.transitions = (
            TransitionTable.load(os.path.join(here, "model", FILE_NAME)) if self.blend_weight > 0 else None
        )
        self.ranker = None
        if os.path.isdir(os.path.join(here, "ranker")):
            from components.ranking.artifact import RankerArtifact

            self.ranker = RankerArtifact.load(os.path.join(here, "ranker"))

    def execute(self, requests):
        from components.decoding.recommend import recommend_batch

        histories, ks, prefixes = [], [], []
        for request in requests:
            history = pb_utils.get_input_tensor_by_name(request, "HISTORY").as_numpy().reshape(-1)
            k = int(pb_utils.get_input_tensor_by_name(request, "K").as_numpy().reshape(-1)[0])
            pref = pb_utils.get_input_tensor_by_name(request, "PREFIXES")
            pref = [] if pref is None else [p.decode() for p in pref.as_numpy().reshape(-1) if p]
            histories.append([h.decode() for h in history])
            ks.append(max(1, min(k, self.max_k)))
            prefixes.append([tuple(int(c) for c in p.split("_")) for p in pref] or None)
        rows = recommend_batch(
            self.model,
            self.tokenizer,
            self.trie,
            self.sidmap,
            histories,
            max(ks),
            self.beam_size,
            prefixes,
            transitions=self.transitions,
            blend_weight=self.blend_weight,
            ranker=self.ranker,
        )
        responses = []
        for row, want in zip(rows, ks, strict=True):
            row = row[:want]
            item_ids = np.array([item.encode() for item, _ in row], dtype=np.object_)
            sids = np.array([self.sidmap.sid_of(item).encode() for item, _ in row], dtype=np.object_)
            scores = [score for _, score in row]
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("ITEM_IDS", item_ids),
                        pb_utils.Tensor("SIDS", sids),
                        pb_utils.Tensor("SCORES", np.array(scores, dtype=np.float32)),
                    ]
                )
            )
        return responses

    def finalize(self):
        self.model = None
