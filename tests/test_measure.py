"""Measuring from outside: the TIME_WAIT count the bench reports."""

from __future__ import annotations

import socket
import sys

import pytest

from flags2.measure import _count_time_wait, time_wait_sockets

_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
)


def _row(state: str) -> str:
    return f"   0: 0100007F:1F90 0100007F:D3A2 {state} 00000000:00000000 00:00000000\n"


def test_only_rows_in_time_wait_are_counted() -> None:
    rows = [_HEADER, _row("06"), _row("01"), _row("0A"), _row("06"), "\n"]
    assert _count_time_wait(rows) == 2
    assert _count_time_wait([_HEADER]) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc/net/tcp")
def test_a_connection_closed_first_by_this_side_is_counted() -> None:
    # The side that closes first keeps the connection in TIME_WAIT for a
    # minute, so the count cannot drop below one while this test runs.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        client.close()
        accepted.recv(1)  # the client's FIN
        accepted.close()
    count = time_wait_sockets()
    assert count is not None and count >= 1
