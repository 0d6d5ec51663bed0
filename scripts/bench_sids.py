"""Scale benchmark for the SID quantizer step: `python scripts/bench_sids.py --items 1000000 [--out FILE]`.

Same code path as `sidrec sids bench`: k-means per level trained on a sample, every item assigned, collisions
resolved, peak RSS from resource.getrusage. Prints one JSON object (and writes it to --out if given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="faiss/BLAS threads (the CI machine has 2 cores)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from components.sids.bench import run_sid_benchmark

    result = run_sid_benchmark(args.items, args.dim, args.levels, args.codebook_size, threads=args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
