"""Stopping servers and workers by PID: a whole own-session group, or the process alone, never the caller."""

from __future__ import annotations

import subprocess
import sys

from components.local.procs import start_process, stop_process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_stop_process_ends_a_child_sharing_our_group_without_touching_us():
    proc = subprocess.Popen(SLEEPER)  # no new session: killpg here would end the test runner itself
    stop_process(proc, timeout=5)
    assert proc.poll() is not None  # we are still running to see it


def test_stop_process_ends_an_own_session_group_with_its_children(tmp_path):
    spawn = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
    spawn += " print('up', flush=True); time.sleep(600)"
    proc = start_process([sys.executable, "-c", spawn], tmp_path / "log")
    for _ in range(100):
        if (tmp_path / "log").read_text().strip() == "up":
            break
        subprocess.run(["sleep", "0.1"], check=True)
    group = proc.pid
    assert len(_live_members(group, wait=False)) == 2  # the leader and its child
    stop_process(proc, timeout=5)
    assert proc.poll() is not None
    assert _live_members(group) == []


def _live_members(group: int, wait: bool = True) -> list[str]:
    """PIDs of the group that are not zombies (an orphan is reaped by init a moment after it dies)."""
    for _ in range(50):
        out = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(group)], capture_output=True, text=True).stdout
        live = [line.split()[0] for line in out.splitlines() if line.split() and not line.split()[1].startswith("Z")]
        if not live or not wait:
            return live
        subprocess.run(["sleep", "0.1"], check=True)
    return live
