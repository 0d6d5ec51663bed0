#!/usr/bin/env bash
# The Triton python-backend stub's environment: numpy<2 (numpy 2 silently corrupts tensors in the stub of
# tritonserver 2.51), torch (same pinned CPU wheel) and transformers. Separate from .venv, whose Feast needs numpy 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-serving/bin/python ]; then
  "$PY" -m venv .venv-serving
fi
.venv-serving/bin/python -m pip install -q --upgrade "pip>=24"
.venv-serving/bin/python -m pip install -q -r requirements-serving.lock
