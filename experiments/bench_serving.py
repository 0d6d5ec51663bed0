"""Benchmark: latency and throughput through Triton (gRPC, dynamic batching) vs the model in-process.

Uses the model repository written by `sidrec demo` (runs/demo/triton_repo) unless --repo is given (any
repository `sidrec serving export` wrote); starts Triton on it itself. The in-process path is the same served
recommender (the version Triton serves, loaded with Recommender.from_pretrained: its beam, blend or ranker) called
from Python threads. For each concurrency level, C client threads send requests for --seconds; then one
--load-seconds run at concurrency 8 counts errors. Prints a markdown table.
Usage: python -m experiments.bench_serving [--repo DIR] [--seconds 10] [--load-seconds 60]
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

    from components.local.triton import start_triton
    from components.runtime.recommender import Recommender
    from components.serving.export import CONFIG_FILE, served_version

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default="runs/demo/triton_repo")
    parser.add_argument("--model-name", default="sidrec", help="the model's name in the repository")
    parser.add_argument("--workdir", default="runs/bench_serving_triton", help="Triton's working dir (its log)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    folder = Path(args.repo) / args.model_name
    versions = sorted(int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit())
    config = folder / CONFIG_FILE
    version = served_version(config.read_text() if config.exists() else None) or versions[-1]
    recommender = Recommender.from_pretrained(folder / str(version))  # what the backend loads, on the CPU
    histories = _histories(recommender.sidmap, 256)
    lock = threading.Lock()

    def in_process(history):
        with lock:  # one model instance, like one Triton instance
            return recommender.recommend([history], args.k)

    print("| path | concurrency | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---|---|---|---|")
    server = start_triton(Path(args.repo).resolve(), Path(args.workdir).resolve())
    try:
        local = threading.local()

        def via_triton(history):
            if not hasattr(local, "client"):
                local.client = grpcclient.InferenceServerClient(server.grpc_url)
            h = grpcclient.InferInput("HISTORY", [1, len(history)], "BYTES")
            h.set_data_from_numpy(np.array([[x.encode() for x in history]], dtype=np.object_))
            k = grpcclient.InferInput("K", [1, 1], "INT32")
            k.set_data_from_numpy(np.array([[args.k]], dtype=np.int32))
            out = local.client.infer(args.model_name, [h, k], client_timeout=30).as_numpy("ITEM_IDS")
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
