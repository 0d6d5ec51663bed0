# The two commands of the README: `make demo` (install + main job on the bundled data) and `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup demo test lint bench

setup: .venv/.installed

.venv/.installed: requirements.lock requirements-nodeps.lock requirements-serving.lock pyproject.toml scripts/setup.sh scripts/setup_serving.sh infra/docker/airflow-auth.txt
	bash scripts/setup.sh
	touch $@

demo: setup
	$(ENV) sidrec demo

test: setup
	$(ENV) ruff check . && python -m pytest -q

lint: setup
	$(ENV) ruff check . && ruff format --check .
