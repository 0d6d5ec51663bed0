# Source this file to run `airflow ...` commands by hand against the project's local Airflow:
#   source scripts/airflow_env.sh [--port 8080] [--config configs/demo.yaml]
# AIRFLOW_HOME=.airflow (gitignored), SQLite metadata, examples off, DAGs unpaused at creation, dag-processor
# refresh 15 s, parallelism 4, a 64-byte JWT secret kept in AIRFLOW_HOME, simple auth manager with all-admins
# (local/CI only). The values come from components/orchestration/local_airflow.py, the one place they are set.
# shellcheck shell=bash
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
eval "$(sidrec airflow env "$@")"
