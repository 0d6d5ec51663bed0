"""Triton python-backend model: the sidrec Recommender behind Triton's dynamic batcher.

Follows Triton's python_backend layout (initialize / execute / finalize). The version directory is the
recommender's own directory (runtime.Recommender.save_pretrained) plus ./runtime, a copy of the components
package, so the backend runs exactly the library's runtime core: all valid requests of a dynamic batch go through
ONE Recommender.recommend call (one prompt pass, one decode step per SID level, then the served stage).

A request may carry its runtime context, REQUEST_UNIX and LAST_EVENT_UNIX: the prompt then gets the context line
training wrote for the same clocks (runtime.context), when the model was trained with contexts.

Each request is parsed and checked on its own: a malformed one (bad K, undecodable history or prefix) gets its
own error and never fails the others of its batch. Prefixes computed for a SID map of another lineage (another
build; a refresh keeps every code, so its prefixes stay valid) are ignored (the request is fully decoded) and
counted: a log line and the metric sidrec_stale_prefixes_total.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class RequestError(ValueError):
    """A request that cannot be served as sent."""


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "runtime"))
        import torch

        from components.logs import quiet_third_party
        from components.runtime.context import RequestContext
        from components.runtime.language import decode_prefix, sid_of
        from components.runtime.recommender import Recommender
        from components.sids.sidmap import lineage

        quiet_third_party()
        self.decode_prefix, self.sid_of, self.lineage = decode_prefix, sid_of, lineage
        self.RequestContext = RequestContext
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        use_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        device = f"cuda:{args.get('model_instance_device_id', '0')}" if use_gpu else "cpu"
        self.recommender = Recommender.from_pretrained(here, device=device, dtype=params.get("dtype", "auto"))
        self.versions = np.array(
            [[(self.recommender.model_version or "").encode(), self.recommender.sid_version.encode()]],
            dtype=np.object_,
        )
        self.stale_prefixes = 0
        self.stale_family = self.stale_metric = None
        try:  # custom metrics exist in recent python backends; serving works without them
            self.stale_family = pb_utils.MetricFamily(  # kept: a Metric dies with its family
                name="sidrec_stale_prefixes_total",
                description="requests whose think-ahead prefixes were for another SID version (ignored)",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self.stale_metric = self.stale_family.Metric(labels={"sid_version": self.recommender.sid_version})
        except Exception:  # noqa: BLE001 - an older backend without custom metrics
            self.stale_family = self.stale_metric = None

    def _context(self, request):
        """The request's RequestContext from REQUEST_UNIX (and LAST_EVENT_UNIX), or None without REQUEST_UNIX."""
        at_tensor = pb_utils.get_input_tensor_by_name(request, "REQUEST_UNIX")
        if at_tensor is None:
            return None
        last_tensor = pb_utils.get_input_tensor_by_name(request, "LAST_EVENT_UNIX")
        at_values = at_tensor.as_numpy().reshape(-1)
        last_values = last_tensor.as_numpy().reshape(-1) if last_tensor is not None else np.zeros(1, np.int64)
        if len(at_values) != 1 or len(last_values) != 1:
            raise RequestError("REQUEST_UNIX and LAST_EVENT_UNIX must hold one value each")
        at, last = int(at_values[0]), int(last_values[0])
        last = last if last > 0 else None  # LAST_EVENT_UNIX 0 or absent: no earlier event
        if at <= 0:
            raise RequestError(f"REQUEST_UNIX must be a positive unix time in seconds, got {at}")
        return self.RequestContext(at, last)

    def _parse(self, request):
        """(history, k, prefixes or None, context or None) of one request; RequestError with a message for anything
        malformed."""
        history_tensor = pb_utils.get_input_tensor_by_name(request, "HISTORY")
        k_tensor = pb_utils.get_input_tensor_by_name(request, "K")
        if history_tensor is None or k_tensor is None:
            raise RequestError("HISTORY and K are required")
        try:
            history = [h.decode("utf-8") for h in history_tensor.as_numpy().reshape(-1) if len(h)]
        except (UnicodeDecodeError, AttributeError) as exc:
            raise RequestError(f"HISTORY must hold UTF-8 item ids ({exc})") from exc
        k_values = k_tensor.as_numpy().reshape(-1)
        if len(k_values) != 1:
            raise RequestError(f"K must hold one value, got {len(k_values)}")
        k = int(k_values[0])
        if not 1 <= k <= self.recommender.max_k:
            raise RequestError(f"K must lie in [1, {self.recommender.max_k}] (serving.max_k), got {k}")
        prefixes = None
        pref_tensor = pb_utils.get_input_tensor_by_name(request, "PREFIXES")
        if pref_tensor is not None:
            values = [p for p in pref_tensor.as_numpy().reshape(-1) if len(p)]
            version_tensor = pb_utils.get_input_tensor_by_name(request, "PREFIXES_VERSION")
            version = version_tensor.as_numpy().reshape(-1)[0].decode() if version_tensor is not None else None
            if values and version is not None and self.lineage(version) != self.recommender.sidmap.lineage:
                self._stale(version)
            elif values:
                try:
                    prefixes = [self.decode_prefix(p) for p in values]
                except ValueError as exc:
                    raise RequestError(f"PREFIXES: {exc}") from exc
                depth = {len(p) for p in prefixes}
                if len(depth) != 1 or depth.pop() >= self.recommender.sidmap.n_levels:
                    raise RequestError(
                        f"PREFIXES must all have the same length, below {self.recommender.sidmap.n_levels} codes"
                    )
        return history, k, prefixes, self._context(request)

    def _stale(self, version):
        self.stale_prefixes += 1
        if self.stale_metric is not None:
            try:
                self.stale_metric.increment(1)
            except Exception:  # noqa: BLE001 - a metric must never fail a request
                self.stale_metric = None
        if self.stale_prefixes == 1 or self.stale_prefixes % 100 == 0:
            pb_utils.Logger.log_warn(
                f"sidrec: ignored think-ahead prefixes of SID version {version} (serving "
                f"{self.recommender.sid_version}); {self.stale_prefixes} request(s) so far"
            )

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed = []
        for index, request in enumerate(requests):
            try:
                parsed.append((index, *self._parse(request)))
            except RequestError as exc:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        if parsed:
            histories = [history for _, history, _, _, _ in parsed]
            prefixes = [p for _, _, _, p, _ in parsed]
            contexts = [c for *_, c in parsed]
            try:
                rows = self.recommender.recommend(
                    histories, max(k for _, _, k, _, _ in parsed), prefixes, contexts=contexts, batch_size=len(parsed)
                )
            except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: each request says why
                error = pb_utils.TritonError(f"sidrec could not serve this batch: {type(exc).__name__}: {exc}")
                for index, *_ in parsed:
                    responses[index] = pb_utils.InferenceResponse(error=error)
                return responses
            sidmap = self.recommender.sidmap
            for (index, _, k, used, _), row in zip(parsed, rows, strict=True):
                row = row[:k]
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("ITEM_IDS", np.array([[i.encode() for i, _ in row]], dtype=np.object_)),
                        pb_utils.Tensor(
                            "SIDS", np.array([[self.sid_of(sidmap, i).encode() for i, _ in row]], dtype=np.object_)
                        ),
                        pb_utils.Tensor("SCORES", np.array([[s for _, s in row]], dtype=np.float32)),
                        pb_utils.Tensor("PREFIXES_USED", np.array([[used is not None]], dtype=np.bool_)),
                        pb_utils.Tensor("VERSIONS", self.versions),
                    ]
                )
        return responses

    def finalize(self):
        self.stale_metric = self.stale_family = None  # metrics before their family
        self.recommender = None
