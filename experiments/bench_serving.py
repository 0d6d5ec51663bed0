"""Benchmark: latency, throughput and memory through Triton (gRPC, dynamic batching) vs the model in-process.

Uses the model repository written by `sidrec demo` (runs/demo/triton_repo) unless --repo is given (any repository
`sidrec serving export` wrote). From its served version it lays out a bench repository under --workdir with two
models: `sidrec` (the served stages as exported, e.g. the ranking stage) and `sidrec_norank` (the same version
with the ranking stage off: symlinked files, its own recommender.json), each with the dynamic-batching settings
under test, and starts Triton on it once per --delays value. The in-process path is the same recommender (loaded
with Recommender.from_pretrained, with and without the ranker) called from Python threads through one lock, as one
Triton instance runs one batch at a time, with the thread count Triton's backend gets (SIDREC_TRITON_THREADS, 1).

For each delay, model and concurrency (1 and 8): C client threads send requests for --seconds, Triton and
in-process in turn. Then:
- "overhead" = Triton p50 - in-process p50 at concurrency 1, with where the server spent its part (Triton's own
  statistics per request: queue, input, execute = the backend's execute(), output) and the rest (client + gRPC);
- a --load-seconds run at concurrency 8 counts errors and samples the resident memory of Triton and its python
  backend stubs every second: peak (VmHWM) and growth from the first to the last 10 s.
Prints markdown tables.
Usage: python -m experiments.bench_serving [--repo DIR] [--seconds 10] [--load-seconds 60] [--delays 0 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np

MODELS = {"sidrec": None, "sidrec_norank": False}  # bench model name -> ranker override (None = as exported)


def _histories(sidmap, n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(sidmap.item_ids, size=10)) for _ in range(n)]


def _run(fn, histories, concurrency: int, seconds: float) -> dict:
    latencies, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                fn(histories[i % len(histories)])
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
            except Exception:  # counted, reported
                with lock:
                    errors[0] += 1
            i += concurrency

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies or [float("nan")])
    return {
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "rps": len(latencies) / wall,
        "errors": errors[0],
        "requests": len(latencies),
    }


def bench_repository(source: Path, version: int, target: Path, delay_us: int, preferred: list[int]) -> Path:
    """The bench repository: both models on the served version's files, with these batching settings."""
    shutil.rmtree(target, ignore_errors=True)
    config = (source / "config.pbtxt").read_text()
    batching = f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay_us}\n"
    if preferred:
        batching += f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
    config = re.sub(r"dynamic_batching \{[^}]*\}\n", batching + "}\n", config)
    for name, ranker in MODELS.items():
        folder = target / name / str(version)
        folder.mkdir(parents=True)
        (target / name / "config.pbtxt").write_text(re.sub(r'name: "[^"]*"', f'name: "{name}"', config, count=1))
        for entry in (source / str(version)).iterdir():
            if entry.name == "recommender.json" and ranker is not None:
                spec = json.loads(entry.read_text())
                (folder / entry.name).write_text(json.dumps({**spec, "ranker": ranker}))
            else:
                (folder / entry.name).symlink_to(entry.resolve())
    return target


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc (0, 0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = {k: float(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class MemorySampler:
    """Samples the RSS of Triton and each of its python backend stubs once a second, in a thread."""

    def __init__(self, server_pid: int) -> None:
        self.pids = {"tritonserver": server_pid}
        for child in _children(server_pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"stub" in cmdline[0]:
                model = cmdline[1].decode().split("/")[-3] if len(cmdline) > 1 else str(child)
                self.pids[f"stub {model}"] = child
        self.samples: dict[str, list[float]] = {name: [] for name in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for name, pid in self.pids.items():
                self.samples[name].append(_memory_mb(pid)[0])

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, dict]:
        out = {}
        for name, pid in self.pids.items():
            rss = self.samples[name]
            first, last = np.mean(rss[:10]) if rss else 0.0, np.mean(rss[-10:]) if rss else 0.0
            out[name] = {"peak_mb": _memory_mb(pid)[1], "first_10s_mb": first, "last_10s_mb": last}
        return out


def _stats(client, model: str) -> dict:
    """Triton's cumulative per-model statistics: request count and ns in each phase."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    return {k: int(v.get("ns", 0)) for k, v in stats.items()} | {"count": int(stats["success"].get("count", 0))}


def _per_request_ms(before: dict, after: dict) -> dict:
    n = max(after["count"] - before["count"], 1)
    keys = ("success", "queue", "compute_input", "compute_infer", "compute_output")
    return {k: (after[k] - before[k]) / n / 1e6 for k in keys}


def triton_caller(url: str, k: int):
    """A function sending one request (history, k) to a model over gRPC, with one client per thread."""
    import tritonclient.grpc as grpcclient

    local = threading.local()

    def call(history: list[str], model: str) -> None:
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        h = grpcclient.InferInput("HISTORY", [1, len(history)], "BYTES")
        h.set_data_from_numpy(np.array([[x.encode() for x in history]], dtype=np.object_))
        k_input = grpcclient.InferInput("K", [1, 1], "INT32")
        k_input.set_data_from_numpy(np.array([[k]], dtype=np.int32))
        out = local.client.infer(model, [h, k_input], client_timeout=30).as_numpy("ITEM_IDS")
        if len(out.reshape(-1)) != k:
            raise RuntimeError("short answer")

    return call


def main() -> None:
    import torch
    import tritonclient.grpc as grpcclient

    from components.local.triton import start_triton
    from components.runtime.recommender import Recommender
    from components.serving.export import CONFIG_FILE, served_version

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default="runs/demo/triton_repo")
    parser.add_argument("--model-name", default="sidrec", help="the model's name in the repository")
    parser.add_argument("--workdir", default="runs/bench_serving_triton", help="bench repository, Triton's log")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--delays", nargs="+", type=int, default=[0, 2000], help="max_queue_delay_microseconds")
    parser.add_argument("--preferred", nargs="*", type=int, default=[], help="preferred_batch_size values")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    threads = int(os.environ.get("SIDREC_TRITON_THREADS", "1"))
    torch.set_num_threads(threads)  # what each Triton stub gets (components.local.triton)
    folder = Path(args.repo) / args.model_name
    versions = sorted(int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit())
    config = folder / CONFIG_FILE
    version = served_version(config.read_text() if config.exists() else None) or versions[-1]
    local = {name: Recommender.from_pretrained(folder / str(version), ranker=ranker) for name, ranker in MODELS.items()}
    histories = _histories(local["sidrec"].sidmap, 256)
    lock = threading.Lock()
    workdir = Path(args.workdir).resolve()
    print(f"repository {args.repo} version {version}, k {args.k}, {threads} torch thread(s) in both paths")
    print("\n| queue delay us | model | path | concurrency | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for delay in args.delays:
        repo = bench_repository(folder, version, workdir / "repo", delay, args.preferred)
        server = start_triton(repo, workdir / "triton")
        try:
            via_triton = triton_caller(server.grpc_url, args.k)

            def in_process(history, model):
                with lock:  # one model instance, like one Triton instance
                    return local[model].recommend([history], args.k)

            stats_client = grpcclient.InferenceServerClient(server.grpc_url)
            for model in MODELS:
                results = {}
                for concurrency in args.concurrency:
                    for path, fn in (("Triton gRPC", via_triton), ("in-process", in_process)):
                        before = _stats(stats_client, model) if path == "Triton gRPC" else None
                        r = _run(lambda h, f=fn, m=model: f(h, m), histories, concurrency, args.seconds)
                        if before is not None:
                            r["server"] = _per_request_ms(before, _stats(stats_client, model))
                        results[(path, concurrency)] = r
                        print(
                            f"| {delay} | {model} | {path} | {concurrency} | {r['p50']:.1f} | {r['p99']:.1f} "
                            f"| {r['rps']:.1f} | {r['errors']} |",
                            flush=True,
                        )
                summary.append((delay, model, results))
            if args.load_seconds > 0:
                with MemorySampler(server.pid) as sampler:
                    r = _run(lambda h, f=via_triton: f(h, "sidrec"), histories, 8, args.load_seconds)
                print(
                    f"| {delay} | sidrec | Triton gRPC, {args.load_seconds:.0f} s load run | 8 | {r['p50']:.1f} "
                    f"| {r['p99']:.1f} | {r['rps']:.1f} | {r['errors']} of {r['requests'] + r['errors']} |",
                    flush=True,
                )
                for name, m in sampler.report().items():
                    print(
                        f"memory, delay {delay}, {name}: peak {m['peak_mb']:.0f} MB, first 10 s "
                        f"{m['first_10s_mb']:.0f} MB, last 10 s {m['last_10s_mb']:.0f} MB",
                        flush=True,
                    )
        finally:
            server.stop()
    print(
        "\n| queue delay us | model | overhead p50 ms (c=1) | server: queue / input / execute / output ms "
        "| client + gRPC ms | in-process execute ms | throughput Triton / in-process (c=8) |"
    )
    print("|---|---|---|---|---|---|---|")
    for delay, model, results in summary:
        tri, loc = results.get(("Triton gRPC", 1)), results.get(("in-process", 1))
        if tri is None or loc is None:
            continue
        s = tri["server"]
        client = tri["p50"] - s["success"]
        c8 = (results.get(("Triton gRPC", 8)), results.get(("in-process", 8)))
        ratio = f"{c8[0]['rps'] / c8[1]['rps']:.2f}x" if all(c8) else "-"
        print(
            f"| {delay} | {model} | {tri['p50'] - loc['p50']:+.2f} | {s['queue']:.2f} / {s['compute_input']:.2f} / "
            f"{s['compute_infer']:.2f} / {s['compute_output']:.2f} | {client:.2f} | {loc['p50']:.2f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
