"""bf16 autocast on the CPU (train.bf16_autocast): the time of one training step's forward + backward, fp32 vs
bf16, side by side in one process, so that the ratio says whether this CPU has native bf16 (AMX / AVX512-BF16).

    python -m experiments.bench_bf16 '{"model": {"backbone": "smollm2-135m", "pretrained_layers": 2}}' --reps 5

Builds the config's backbone (load_backbone, the product's path), feeds random token ids of the benchmark's batch
shape (train.batch_size rows of --tokens tokens) and times loss.backward() over a head of --head-tokens rows (the
SID-level softmax of train.sid_softmax reads one level's codes; a full vocabulary is the default model's head).
The two settings alternate, so machine noise falls on both; prints the median milliseconds of each and the ratio.
The optimizer step is not timed (it does not change with autocast).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from components.config import PROJECT_ROOT, load_config
from components.runtime.backbone import decoder_and_head, load_backbone


def step_ms(model, ids: torch.Tensor, head_rows: torch.Tensor, bf16: bool) -> float:
    """Milliseconds of one forward + backward of the decoder and the head's rows `head_rows`."""
    decoder, head = decoder_and_head(model)
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = decoder(input_ids=ids).last_hidden_state
        logits = hidden @ head.weight[head_rows].T
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten() % len(head_rows))
    loss.backward()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON merged into the config")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--tokens", type=int, default=48, help="tokens per row (a 10-item SID history is ~40)")
    parser.add_argument("--head-tokens", type=int, default=256, help="rows of the output layer scored")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the benchmark trains on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, json.loads(args.overrides))
    model, _ = load_backbone(cfg.model)
    model.train()
    vocab = model.get_input_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (cfg.train.batch_size, args.tokens), generator=gen)
    head_rows = torch.randperm(vocab, generator=gen)[: args.head_tokens]
    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16 in (False, True):  # warm-up: oneDNN picks its kernels on the first call
        step_ms(model, ids, head_rows, bf16)
    for _ in range(args.reps):
        for bf16 in (False, True):
            times[bf16].append(step_ms(model, ids, head_rows, bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    native = torch.cpu._is_avx512_bf16_supported() if hasattr(torch.cpu, "_is_avx512_bf16_supported") else None
    print(
        json.dumps(
            {
                "backbone": cfg.model.backbone,
                "pretrained_layers": cfg.model.pretrained_layers,
                "batch": list(ids.shape),
                "threads": args.threads,
                "cpu_avx512_bf16": native,
                "fp32_ms_median": round(fp32, 1),
                "bf16_ms_median": round(bf16, 1),
                "fp32_over_bf16": round(fp32 / bf16, 2),
                "reps": args.reps,
            }
        )
    )


if __name__ == "__main__":
    main()
