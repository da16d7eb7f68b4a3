from __future__ import annotations

import re
import threading

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flags2.clients import CONNECTIONS_PER_CLIENT, split_slots
from flags2.status import DownloadStatus
from tests.conftest import RunFn


@pytest.mark.parametrize("concurrency", [1, 5, 31, 32, 33, 100, 999, 1000])
def test_slots_add_up_and_no_client_is_too_big(concurrency: int) -> None:
    sizes = split_slots(concurrency)
    assert sum(sizes) == concurrency
    assert max(sizes) <= CONNECTIONS_PER_CLIENT
    assert max(sizes) - min(sizes) <= 1  # as even as possible


class _Rendezvous:
    """Answers nobody until `expected` requests are in flight at once."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.in_flight = 0
        self.peak = 0
        self._all_here = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.expected:
                self._all_here.set()
        self._all_here.wait(5)
        with self._lock:
            self.in_flight -= 1
        return Response(b"", status=404)


@pytest.mark.parametrize("mode", ["threadpool", "asyncio"])
def test_every_slot_is_used_at_once_without_waiting_for_the_pool(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    # 150 requests over 5 clients: if any waited for a pool slot, the server
    # would never see all 150 at once and would give up after 5 s.
    codes = [a + b for a in "ABCDEF" for b in "ABCDEFGHIJKLMNOPQRSTUVWXY"]
    rendezvous = _Rendezvous(len(codes))
    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(rendezvous)
    tracker = run_mode(codes, concurrency=len(codes), timeout=10.0)
    assert tracker.counter[DownloadStatus.NOT_FOUND] == len(codes)
    assert rendezvous.peak == len(codes)
