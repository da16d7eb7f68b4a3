"""DELAY (and ERROR) really wait the seeded delay: answers timed by a client.

The log prints the planned delay, not the time waited, so only a clock on the
client side shows a sleep that is skipped, shortened or lengthened. The delays
compared differ by far more than a loaded machine's jitter (under 0.25 s
against over 1 s), and the upper margin is generous.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from flags2.servers.options import ServerOptions, data_dir
from flags2.servers.plan import Planned, planned
from flags2.servers.testing import ServerFactory, read_response

SEED = 3
OPTIONS: dict[str, Any] = {
    "seed": SEED,
    "min_delay": 0.05,
    "max_delay": 1.5,
    "error_rate": 0.0,
}
SHORT, LONG = 0.25, 1.0
# Past its planned delay, how late an answer may be: loopback, a small file,
# and a machine shared with other work.
MARGIN = 0.8
_CODES = sorted(path.name for path in (data_dir() / "flags").iterdir())


def _gif(code: str) -> str:
    return f"/flags/{code}/{code}.gif"


def _plan(kind: str, path: str, nth: int = 0) -> Planned:
    return planned(SEED, kind, path, nth, ServerOptions(**OPTIONS))


def _timed_get(port: int, path: str, done: list[tuple[str, float, float]]) -> None:
    """GET `path` on a new connection; append (path, latency, finish time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        with sock.makefile("rb") as reader:
            status = read_response(reader).status
        finished = time.monotonic()
    assert status == 200
    done.append((path, finished - started, finished))


def _assert_waited(latency: float, plan: Planned, what: str) -> None:
    # A sleep is never shorter than asked; 2 ms for the clocks' rounding.
    assert latency >= plan.delay - 0.002, f"{what}: {latency:.3f} s < {plan.delay:.3f}"
    assert latency <= plan.delay + MARGIN, (
        f"{what}: {latency:.3f} s >> {plan.delay:.3f}"
    )


@pytest.mark.parametrize("kind", ["delay", "error"])
def test_each_answer_waits_its_planned_delay_and_they_end_in_plan_order(
    start_server: ServerFactory, kind: str
) -> None:
    by_delay = sorted(_CODES, key=lambda code: _plan(kind, _gif(code)).delay)
    short, long = [_gif(c) for c in by_delay[:2]], [_gif(c) for c in by_delay[-2:]]
    assert all(_plan(kind, path).delay < SHORT for path in short)
    assert all(_plan(kind, path).delay > LONG for path in long)
    server = start_server(kind, **OPTIONS)
    done: list[tuple[str, float, float]] = []
    # The long ones are sent first: only their delays make them end last.
    threads = [
        threading.Thread(target=_timed_get, args=(server.port, path, done))
        for path in long + short
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=10)
    assert len(done) == 4
    for path, latency, _ in done:
        _assert_waited(latency, _plan(kind, path), path)
    finished = [path for path, _, _ in sorted(done, key=lambda item: item[2])]
    assert set(finished[:2]) == set(short)
    assert set(finished[2:]) == set(long)


def test_each_get_of_a_path_waits_the_delay_of_its_count(
    start_server: ServerFactory,
) -> None:
    # A path whose first GET is short and second long, asked twice on one
    # connection: the wait follows the count, not just the path.
    path = next(
        _gif(code)
        for code in _CODES
        if _plan("delay", _gif(code)).delay < SHORT
        and _plan("delay", _gif(code), 1).delay > LONG
    )
    server = start_server("delay", **OPTIONS)
    latencies = []
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        sock.makefile("rb") as reader,
    ):
        for _ in range(2):
            started = time.monotonic()
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert read_response(reader).status == 200
            latencies.append(time.monotonic() - started)
    for nth, latency in enumerate(latencies):
        _assert_waited(latency, _plan("delay", path, nth), f"{path} #{nth}")
