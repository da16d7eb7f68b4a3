"""Measuring a child from outside: its own peak memory, wall time and CPU time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from flags2.bench.measure import Spawner


def test_peak_memory_is_the_childs_own_not_the_benchs(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    python = [sys.executable, "-I", "-S", "-c"]
    with Spawner() as spawner:
        small = spawner.run([*python, "pass"], env={}, stdout=out, stderr=err)
        big = spawner.run(
            [*python, "b = b'x' * (64 * 2**20)"], env={}, stdout=out, stderr=err
        )
        failed = spawner.run(
            [*python, "raise SystemExit(3)"], env={}, stdout=out, stderr=err
        )
        with pytest.raises(OSError):
            spawner.run(["no-such-command-here"], env={}, stdout=out, stderr=err)
    assert small.status == big.status == 0 and failed.status == 3
    assert small.peak_rss_mib < 25  # however big this pytest process is
    assert big.peak_rss_mib - small.peak_rss_mib > 60
    assert 0 < small.wall < 5


def test_cpu_time_is_the_childs_own_work_not_its_waiting(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    python = [sys.executable, "-I", "-S", "-c"]
    with Spawner() as spawner:
        idle = spawner.run(
            [*python, "import time; time.sleep(0.5)"], env={}, stdout=out, stderr=err
        )
        busy = spawner.run(
            [*python, "import time\nt = time.process_time()\n"
             "while time.process_time() - t < 0.5: pass"],
            env={}, stdout=out, stderr=err,
        )  # fmt: skip
    assert idle.wall >= 0.5 and idle.cpu_seconds < 0.3
    assert busy.cpu_seconds >= 0.5  # what it burned, however long it waited


def test_where_wait4_is_missing_the_helper_samples_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flags2 import portable

    monkeypatch.setattr(portable, "CAN_WAIT4", False)  # as on Windows
    out, err = tmp_path / "out", tmp_path / "err"
    python = [sys.executable, "-I", "-S", "-c"]
    with Spawner() as spawner:
        failed = spawner.run(
            [*python, "raise SystemExit(3)"], env={}, stdout=out, stderr=err
        )
        busy = spawner.run(
            [*python, "import time\nt = time.process_time()\n"
             "b = b'x' * (64 * 2**20)\n"
             "while time.process_time() - t < 0.5: pass"],
            env={}, stdout=out, stderr=err,
        )  # fmt: skip
        with pytest.raises(OSError):
            spawner.run(["no-such-command-here"], env={}, stdout=out, stderr=err)
    assert failed.status == 3 and busy.status == 0 and busy.wall >= 0.5
    assert busy.cpu_seconds >= 0.4  # sampled, or counted by os.times
    if importlib.util.find_spec("psutil") is None:
        assert busy.peak_rss_mib == 0  # not known without psutil
    else:
        assert busy.peak_rss_mib > 60
