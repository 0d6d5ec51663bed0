#!/usr/bin/env bash
# One-command install: system packages, the locked Python environment, the Triton serving environment.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# System packages (Debian): redis-server for the Feast online store tests, chromium for the UI screenshot.
if [ -x scripts/setup_system.sh ]; then scripts/setup_system.sh; fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24"
# The lock pins torch==2.13.0+cpu: pip takes the CPU wheel from local disk and fails loudly rather than
# pulling a multi-GB CUDA build.
.venv/bin/python -m pip install -q -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.lock
.venv/bin/python -m pip install -q --no-deps -e .
# The FAB auth manager the Airflow image installs (infra/docker/Dockerfile), the same way: constrained by the lock,
# so no locked package moves. The local stack keeps SimpleAuthManager; this lets the tests check the real CLI flags.
.venv/bin/python -m pip install -q -c requirements.lock -r infra/docker/airflow-auth.txt

# Triton's python-backend stub needs numpy<2 in its own environment.
if [ -x scripts/setup_serving.sh ]; then scripts/setup_serving.sh; fi
echo "sidrec: environment ready (.venv)"
