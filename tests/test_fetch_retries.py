"""Retrying what the README says is retried: a reset, a truncated body, a stall.

A raw-socket server (the ``flaky`` fixture) does one of these to the first
requests for BR's flag and answers the later ones, and counts what arrives.
So each check fails when retrying breaks: transport errors not counted as
transient (one attempt, an error), the number of attempts off by one either
way (the last allowed attempt is the one that succeeds; the one after it would
succeed too), or retries that do not wait (the server sees when each came).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flags2.cli import app
from flags2.status import DownloadStatus
from tests.helpers import FLAKY_FAULTS, MODES, Flaky, RunFn, flag_bytes

Start = Callable[[str, int], Flaky]
STALLS = ("silent", "stall")
# --timeout: how long a stall lasts for the client. Long enough for the good
# answer after it to come in time on a loaded machine; the other faults get
# the default's order, as their failure does not wait for it.
STALL_TIMEOUT = 1.0
# httpx's words for each fault, as in the README's table of faults.
ERRORS = {
    "reset": "ReadError",
    "truncate": "RemoteProtocolError",
    "truncate-chunked": "RemoteProtocolError",
    "silent": "ReadTimeout",
    "stall": "ReadTimeout",
}
# The first backoff is at least this (tenacity's exponential backoff starts at
# 0.1 s, jitter on top); a margin below it for clock granularity.
FIRST_WAIT = 0.09


def _timeout(fault: str) -> float:
    return STALL_TIMEOUT if fault in STALLS else 5.0


def _retries(fault: str) -> int:
    """--retries: 2, so a flag retries more than once; 1 where each costs a stall."""
    return 1 if fault in STALLS else 2


def _least_gap(fault: str) -> float:
    """The shortest time a retry can follow a failed attempt at the server."""
    if fault in STALLS:
        # The client's clock starts as it sends, a moment before the server
        # sees the request: half the wait is left as margin for that moment.
        return STALL_TIMEOUT + FIRST_WAIT / 2
    return FIRST_WAIT  # each retry starts after the failure, which is after it


@pytest.mark.parametrize("fault", FLAKY_FAULTS)
def test_a_transient_fault_is_retried_until_the_last_allowed_attempt(
    fault: str, flaky: Start, run_mode: RunFn, dest: Path
) -> None:
    retries = _retries(fault)
    server = flaky(fault, retries)  # the last attempt allowed succeeds
    tracker = run_mode(
        ["BR", "ZZ"], base_url=server.url, retries=retries, timeout=_timeout(fault)
    )
    br = tracker.results["BR"]
    assert (br.status, br.attempts, br.error) == (DownloadStatus.OK, retries + 1, None)
    assert server.requests == retries + 1
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")
    assert tracker.results["ZZ"].status is DownloadStatus.NOT_FOUND
    gaps = server.gaps()
    assert min(gaps) >= _least_gap(fault), gaps  # each retry waited its backoff


@pytest.mark.parametrize("fault", FLAKY_FAULTS)
def test_retries_stop_after_n_plus_one_attempts(
    fault: str, flaky: Start, run_mode: RunFn, dest: Path
) -> None:
    retries = _retries(fault)
    server = flaky(fault, retries + 1)  # one attempt more than allowed would succeed
    tracker = run_mode(
        ["BR", "ZZ"], base_url=server.url, retries=retries, timeout=_timeout(fault)
    )
    br = tracker.results["BR"]
    assert (br.status, br.attempts) == (DownloadStatus.ERROR, retries + 1)
    assert br.error is not None and ERRORS[fault] in br.error, br.error
    assert server.requests == retries + 1
    assert list(dest.iterdir()) == []
    assert tracker.results["ZZ"].status is DownloadStatus.NOT_FOUND


@pytest.mark.parametrize("fault", FLAKY_FAULTS)
def test_without_retries_a_transient_fault_is_that_flags_error(
    fault: str, flaky: Start, run_mode: RunFn, dest: Path
) -> None:
    server = flaky(fault, 1)  # a second attempt would succeed
    tracker = run_mode(
        ["BR", "ZZ"], base_url=server.url, retries=0, timeout=_timeout(fault)
    )
    br = tracker.results["BR"]
    assert (br.status, br.attempts, br.http_status) == (DownloadStatus.ERROR, 1, None)
    assert br.error is not None and ERRORS[fault] in br.error, br.error
    assert "Traceback" not in br.error
    assert server.requests == 1
    assert list(dest.iterdir()) == []
    assert tracker.results["ZZ"].status is DownloadStatus.NOT_FOUND


@pytest.mark.parametrize("mode", MODES)
def test_the_retries_option_reaches_every_mode(
    mode: str, flaky: Start, dest: Path, tmp_path: Path
) -> None:
    server = flaky("reset", 1)
    record = tmp_path / "run.json"
    args = ["download", "BR", "--mode", mode, "--retries", "1", "-s", server.url,
            "-d", str(dest), "--json", str(record)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert " 1 flag downloaded." in result.output
    flags = json.loads(record.read_text())["flags"]
    assert [(f["cc"], f["status"], f["attempts"]) for f in flags] == [("BR", "OK", 2)]
    assert server.requests == 2
