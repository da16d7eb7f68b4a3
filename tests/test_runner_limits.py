"""The descriptor limit (``ulimit -n``): lifted when a run needs more, else obeyed.

Each run is a child process whose limit is set before flags2 starts
(``preexec_fn``), as a shell's ``ulimit`` would: macOS's default soft limit of
256 under a high hard limit, and a hard limit of 200 that cannot be lifted.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flags2.runner import (
    DESCRIPTOR_RESERVE,
    descriptor_note,
    effective_concurrency,
    load_mode,
)
from flags2.servers.launch import background
from tests.helpers import MODES

_EVERY = 676
_NEEDED = 1000 * 2 + DESCRIPTOR_RESERVE  # what -m 1000 asks for, at most


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    with background(["local"]) as running:
        yield running.urls["local"]


def _download(
    local_url: str, dest: Path, mode: str, soft: int, hard: int
) -> tuple[dict[str, object], str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    args = ["download", "-e", "-m", "1000", "--mode", mode, "-s", local_url]
    args += ["-d", str(dest), "--no-serve", "--json", "-"]
    done = subprocess.run(
        [sys.executable, "-m", "flags2", *args],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    record: dict[str, object] = json.loads(done.stdout)
    return record, done.stderr


def _hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return _NEEDED if hard == resource.RLIM_INFINITY else hard


@pytest.mark.parametrize("mode", MODES)
def test_a_low_soft_limit_is_lifted_and_no_flag_fails(
    local_url: str, tmp_path: Path, mode: str
) -> None:
    if _hard() < _EVERY * 2 + DESCRIPTOR_RESERVE:
        pytest.skip("the hard descriptor limit is too low to lift the soft one")
    record, stderr = _download(local_url, tmp_path, mode, 256, _hard())
    counts = record["counts"]
    assert isinstance(counts, dict) and isinstance(record["flags"], list)
    assert counts["ERROR"] == 0 and counts["OK"] == 194
    assert len(record["flags"]) == _EVERY
    if mode != "sequential":  # all the mode allows: nothing lowered
        assert record["concurrency"] == min(_EVERY, load_mode(mode).MAX_CONCUR_REQ)
    assert "descriptor limit" not in stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_low_hard_limit_lowers_the_concurrency_and_says_so(
    local_url: str, tmp_path: Path, mode: str
) -> None:
    record, stderr = _download(local_url, tmp_path, mode, 200, 200)
    counts = record["counts"]
    assert isinstance(counts, dict) and isinstance(record["flags"], list)
    assert counts["ERROR"] == 0 and counts["OK"] == 194
    assert len(record["flags"]) == _EVERY
    lines = [line for line in stderr.splitlines() if "descriptor limit" in line]
    if mode == "sequential":
        assert lines == [] and record["concurrency"] == 1
        return
    fits = (200 - DESCRIPTOR_RESERVE) // 2
    most = load_mode(mode).MAX_CONCUR_REQ
    if most <= fits:  # a process pool's few workers fit: nothing to say
        assert lines == [] and record["concurrency"] == most
        return
    assert record["concurrency"] == fits  # the number used, in --json too
    assert lines == [
        f"flags2: only {fits} of the {_EVERY} connections asked for fit the"
        " descriptor limit (ulimit -n 200); raise it (ulimit -n 1416) to use"
        " them all"
    ]
    assert f"{fits} concurrent connections will be used." in stderr


def test_the_bench_and_the_run_use_the_same_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flags2 import portable
    from flags2.bench.matrix import code_sets, make_cell

    monkeypatch.setattr(portable, "raise_open_file_limit", lambda wanted: 200)
    monkeypatch.setattr(portable, "open_file_limit", lambda: 200)
    every = code_sets([], False, True, None)[0]
    cell = make_cell("asyncio", "LOCAL", 1000, every)
    assert cell.concurrency == effective_concurrency(1000, 1000, _EVERY) == 68
    note = descriptor_note(1000, 1000, _EVERY)
    assert note is not None and "ulimit -n 200" in note
    assert descriptor_note(30, 1000, _EVERY) is None  # 30 fit


def test_without_a_limit_to_read_nothing_is_lowered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flags2 import portable

    monkeypatch.setattr(portable, "raise_open_file_limit", lambda wanted: None)
    assert effective_concurrency(1000, 1000, _EVERY) == _EVERY
    assert descriptor_note(1000, 1000, _EVERY) is None
