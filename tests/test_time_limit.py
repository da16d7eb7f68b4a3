"""The suite's own time limit: a deadlock fails the run, with stacks, never hangs it.

pyproject.toml gives every test a limit (pytest-timeout) and picks how it
strikes. These run a deadlocked test under that very configuration, with the
limit lowered to a second, in a blocking call of the main thread and of a
worker thread (which a SIGALRM-based limit would stop but then wait for).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
DEADLOCKS = """
import queue
from concurrent.futures import ThreadPoolExecutor


def test_main_thread():
    queue.SimpleQueue().get()  # nothing is ever put


def test_worker_thread():
    with ThreadPoolExecutor(1) as executor:
        executor.submit(queue.SimpleQueue().get).result()
"""


def _run_deadlock(where: str, tmp_path: Path, *extra: str) -> str:
    (tmp_path / "test_deadlock.py").write_text(DEADLOCKS)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "--rootdir",
         str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=1", *extra,
         "-k", where, str(tmp_path)],
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    # The limit struck, not our timeout: a loaded machine takes a while to
    # start (and restart) the child's xdist workers.
    assert time.monotonic() - started < 45
    return proc.stdout + proc.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["main_thread", "worker_thread"])
def test_a_deadlock_fails_the_parallel_run_naming_the_test(
    where: str, tmp_path: Path
) -> None:
    # Under pyproject's xdist workers the stuck worker ends and is
    # replaced; its stacks stay in the worker, the test is named as failed.
    output = _run_deadlock(where, tmp_path)
    assert f"crashed while running 'test_deadlock.py::test_{where}'" in output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["main_thread", "worker_thread"])
def test_a_deadlock_fails_the_run_with_every_stack(where: str, tmp_path: Path) -> None:
    # Without the workers (-n 0, as the README says for a hang), the stacks.
    dump = _run_deadlock(where, tmp_path, "-n", "0")
    assert "Timeout" in dump
    assert "Stack of MainThread" in dump and f"test_{where}" in dump
    if where == "worker_thread":
        assert "Stack of ThreadPoolExecutor" in dump  # where it really hangs


def test_every_test_has_a_limit_that_fits_the_whole_suite(
    pytestconfig: pytest.Config,
) -> None:
    # The whole suite stays under 90 s: no single test may be allowed more.
    assert 0 < float(pytestconfig.getini("timeout")) <= 90
    assert pytestconfig.getini("timeout_method") == "thread"
