#!/usr/bin/env bash
# Debian packages the tests need: redis-server (Feast online store), chromium (Airflow UI screenshot), libgomp1
# (OpenMP for LightGBM's ranker).
# Skipped when already present; needs root (CI and the dev machines run as root).
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q libgomp.so.1 || need+=(libgomp1)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup_system: please install with root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts a system redis on install; tests use their own on free ports, stop the packaged one.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi
