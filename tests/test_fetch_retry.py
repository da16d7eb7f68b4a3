"""Odd Retry-After values in every mode: each gets the full number of attempts.

A 503 carries the value on every attempt. A usable value is waited (capped); an
unusable one is ignored for the normal backoff. Both waits are made short here,
and the backoff is counted, so the test says which wait each value got.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate

import pytest

from flags2 import fetch
from flags2.status import DownloadStatus
from tests.helpers import IN_PROCESS_MODES, RunFn

CAP = 0.05  # RETRY_AFTER_CAP for these tests: a usable value waits this long
RETRIES = 3
IN_AN_HOUR = formatdate(time.time() + 3600, usegmt=True).encode()


def _answer(*values: bytes) -> bytes:
    headers = b"".join(b"Retry-After: " + value + b"\r\n" for value in values)
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n" + headers
        + b"Content-Length: 4\r\nConnection: close\r\n\r\nbusy"
    )  # fmt: skip


# The raw header bytes, and the wait each attempt must get: CAP, 0 or None
# (the backoff).
VALUES: dict[str, tuple[tuple[bytes, ...], float | None]] = {
    "superscript two (UTF-8)": (("²".encode(),), None),
    "superscript two (Latin-1)": ((b"\xb2",), None),
    "Arabic-Indic 12": (("١٢".encode(),), None),
    "fullwidth 3": (("\uff13".encode(),), None),
    "negative": ((b"-1",), None),
    "1e309": ((b"1e309",), None),
    "huge digits": ((b"99999999999999999999",), CAP),
    "digits past float": ((b"9" * 400,), CAP),
    "inf": ((b"inf",), None),
    "nan": ((b"nan",), None),
    "empty": ((b"",), None),
    "whitespace": ((b"   ",), None),
    "a fraction": ((b"1.5",), None),
    "two headers": ((b"1", b"2"), None),
    "a list": ((b"1, 2",), None),
    "a date in the past": ((b"Sun, 06 Nov 1994 08:49:37 GMT",), 0.0),
    "a date in the future": ((IN_AN_HOUR,), CAP),
    "a date that cannot be": ((b"Sun, 32 Nov 1994 08:49:37 GMT",), None),
    "a day that overflows": ((b"06 Nov 99999999999999999999 00:00",), None),
    "garbage": ((b"soon, maybe",), None),
    "zero": ((b"0",), 0.0),
    "seconds": ((b"1",), CAP),
}  # fmt: skip


# The waits are counted by patching fetch here, so not in a process pool's workers.
@pytest.mark.parametrize("mode", IN_PROCESS_MODES)
@pytest.mark.parametrize(("values", "wait"), VALUES.values(), ids=list(VALUES))
def test_every_retry_after_value_gets_every_attempt(
    raw_server: Callable[[bytes], str], run_mode: RunFn,
    monkeypatch: pytest.MonkeyPatch, values: tuple[bytes, ...], wait: float | None,
) -> None:  # fmt: skip
    backoffs: list[object] = []

    def backoff(state: object) -> float:
        backoffs.append(state)
        return 0.0

    monkeypatch.setattr(fetch, "RETRY_AFTER_CAP", CAP)
    monkeypatch.setattr(fetch, "_backoff", backoff)
    url = raw_server(_answer(*values))
    start = time.perf_counter()
    result = run_mode(["BR"], base_url=url, retries=RETRIES).results["BR"]
    took = time.perf_counter() - start
    assert result.status is DownloadStatus.ERROR
    assert result.error == "HTTP error 503 - Service Unavailable", result.error
    assert result.attempts == RETRIES + 1
    if wait is None:  # ignored: the normal backoff between attempts (tenacity
        # may also ask for the wait after the last one, before it stops)
        assert len(backoffs) >= RETRIES
    else:  # honoured, and capped
        assert backoffs == []
        assert took >= RETRIES * wait
