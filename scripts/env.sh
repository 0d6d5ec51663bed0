# Source this file: keeps every tool's home, cache and state inside the project (nothing in $HOME).
# shellcheck shell=bash
SIDREC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SIDREC_ROOT
export HOME="$SIDREC_ROOT/.home"
export XDG_CACHE_HOME="$SIDREC_ROOT/.cache"
export HF_HOME="$SIDREC_ROOT/.cache/huggingface"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MPLCONFIGDIR="$SIDREC_ROOT/.cache/matplotlib"
export AIRFLOW_HOME="$SIDREC_ROOT/.airflow"
export PATH="$SIDREC_ROOT/.venv/bin:$PATH"
export TOKENIZERS_PARALLELISM=false
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$MPLCONFIGDIR"
