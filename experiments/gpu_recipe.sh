#!/usr/bin/env bash
# The GPU recipe on a lent GPU machine, from the parts experiments/gpu_bundle.py packed (.gpu/CALLS.md says which
# call carries which part; this is the last call's command). Installs the carried wheels into a folder of its own,
# puts SmolLM2's GGUF together, runs the recipe on the CPU headline's SID maps and leaves summary.json, table.md
# and log.txt in $OUT (runs/gpu_recipe without it). Extra arguments go to experiments.gpu_benchmark.
# Phase 1 stops at 300 s so that the whole call ends inside the 600 s a device call may run.
# Checked on the CPU beforehand, where the wheels (for the GPU machine's Python 3.12) do not install:
#   source scripts/env.sh && SIDREC_GPU_SKIP_INSTALL=1 OUT=runs/gpu_recipe_check bash experiments/gpu_recipe.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu_recipe}"
site=/tmp/sidrec-site
mkdir -p "$out" "$site"
if [ -z "${SIDREC_GPU_SKIP_INSTALL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpu/part*/wheels/*.whl
fi
maps=$(python3 -m experiments.gpu_bundle --unpack --site "$site")
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi -L || true
status=0
python3 -m experiments.gpu_benchmark --out runs/gpu_recipe --sid-map "$maps/train" --test-sid-map "$maps/test" \
  --phase1-seconds 300 "$@" \
  2>&1 | tee "$out/log.txt" || status=$?
cp runs/gpu_recipe/summary.json runs/gpu_recipe/table.md "$out/" 2>/dev/null || true  # what it wrote, also on failure
exit "$status"
