"""Benchmark: latency and throughput through Triton (gRPC, dynamic batching) vs the model in-process.

Uses the model repository written by `sidrec demo` (runs/demo/triton_repo) unless --repo is given. For each
concurrency level, C client threads send requests for --seconds; then one --load-seconds run at concurrency 8
counts errors. Prints a markdown table. Usage: python scripts/bench_serving.py [--seconds 10] [--load-seconds 60]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np


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


def main() -> None:
    import tritonclient.grpc as grpcclient

    from components.decoding.recommend import recommend_items
    from components.decoding.trie import SidTrie
    from components.model.backbone_runtime import load_runtime_model
    from components.serving.triton_launcher import start_triton

    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", default="runs/demo/triton_repo")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    version_dirs = sorted((Path(args.repo) / "sidrec").glob("[0-9]*"), key=lambda p: int(p.name))
    model, tokenizer, sidmap = load_runtime_model(version_dirs[-1] / "model")
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    histories = _histories(sidmap, 256)
    lock = threading.Lock()

    def in_process(history):
        with lock:  # one model instance, like one Triton instance
            return recommend_items(model, tokenizer, trie, sidmap, [history], args.k, 20)

    print("| path | concurrency | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---|---|---|---|")
    server = start_triton(Path(args.repo).resolve(), Path("runs/bench_serving_triton").resolve())
    try:
        local = threading.local()

        def via_triton(history):
            if not hasattr(local, "client"):
                local.client = grpcclient.InferenceServerClient(server.grpc_url)
            h = grpcclient.InferInput("HISTORY", [1, len(history)], "BYTES")
            h.set_data_from_numpy(np.array([[x.encode() for x in history]], dtype=np.object_))
            k = grpcclient.InferInput("K", [1, 1], "INT32")
            k.set_data_from_numpy(np.array([[args.k]], dtype=np.int32))
            out = local.client.infer("sidrec", [h, k], client_timeout=30).as_numpy("ITEM_IDS")
            if len(out.reshape(-1)) != args.k:
                raise RuntimeError("short answer")

        for concurrency in (1, 8, 32):
            for name, fn in (("Triton gRPC", via_triton), ("in-process", in_process)):
                r = _run(fn, histories, concurrency, args.seconds)
                print(
                    f"| {name} | {concurrency} | {r['p50']:.1f} | {r['p99']:.1f} | {r['rps']:.1f} | {r['errors']} |",
                    flush=True,
                )
        r = _run(via_triton, histories, 8, args.load_seconds)
        print(
            f"| Triton gRPC, {args.load_seconds:.0f} s load run | 8 | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['rps']:.1f} | {r['errors']} of {r['requests'] + r['errors']} |",
            flush=True,
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
