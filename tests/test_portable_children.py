"""Children die with their parent: the bench's measured commands, a test's children.

Each parent here dies without running any cleanup (SIGKILL, or pytest-timeout's
``os._exit``); what kills the child is the kernel's parent-death signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flags2.portable import die_with_parent

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    die_with_parent(signal.SIGKILL) is None, reason="no parent-death signal here"
)


def _gone(pid: int) -> bool:
    """True once `pid` has ended (a zombie waiting for init to reap it counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _read_pid(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"no pid in {path}"
        time.sleep(0.05)
    return int(path.read_text())


def test_the_command_a_spawner_runs_dies_with_a_killed_bench(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    bench = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from flags2.bench.measure import Spawner
        d = Path({str(tmp_path)!r})
        with Spawner() as spawner:
            spawner.run(["sh", "-c", "echo $$ > {pid_file}; exec sleep 60"],
                        env={{"PATH": os.environ["PATH"]}},
                        stdout=d / "out", stderr=d / "err")
    """)
    parent = subprocess.Popen([sys.executable, "-c", bench])
    try:
        child = _read_pid(pid_file)
        assert not _gone(child)
    finally:
        parent.kill()  # SIGKILL: the bench gets no chance to clean up
        parent.wait()
    try:
        assert _wait_gone(child, 2.0)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_a_childs_child_dies_when_pytest_timeout_ends_the_run(tmp_path: Path) -> None:
    """The suite's own set-up (tests.conftest) applies to a run pytest-timeout ends."""
    pid_file = tmp_path / "pid"
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\ntimeout = 1\ntimeout_method = thread\n"
    )
    (tmp_path / "test_sleeper.py").write_text(
        textwrap.dedent(f"""
        import subprocess, sys, time
        from pathlib import Path

        def test_sleeps():
            sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
            child = subprocess.Popen(sleeper)
            Path({str(pid_file)!r}).write_text(str(child.pid))
            time.sleep(30)
        """)
    )
    config = ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            *config,
            str(tmp_path / "test_sleeper.py"),
        ],
        cwd=ROOT,  # where `tests` is importable
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Timeout" in run.stdout + run.stderr, run.stdout[-2000:]
    assert run.returncode != 0
    child = _read_pid(pid_file, timeout=0)
    try:
        assert _wait_gone(child, 2.0)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
