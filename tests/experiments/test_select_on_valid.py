"""experiments.select_on_valid's expected errors: one line naming what is wrong, no traceback."""

from __future__ import annotations

import subprocess
import sys

from components.config import PROJECT_ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.select_on_valid", *args]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def test_a_map_that_is_not_one_is_one_line_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _run("x", "{}", "--out", str(tmp_path / "runs"), "--sid-map", str(tmp_path / "empty"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("select_on_valid: ") and "not a SID map" in last
    assert not (tmp_path / "runs" / "x").exists()


def test_overrides_that_are_not_json_are_one_line(tmp_path):
    done = _run("x", "{train: 1", "--out", str(tmp_path / "runs"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "the overrides are not JSON" in done.stderr.strip().splitlines()[-1]
