"""What big heads on many connections make a server hold: its RSS, from /proc.

The server runs in a child process (``python -m flags2.servers``), so its
resident size is its own; /proc makes these Linux-only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flags2.servers.head import HEAD_LIMIT
from flags2.servers.testing import read_response

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(),
    reason="reads the server's resident size from /proc (Linux only)",
)

# What took DELAY from 24 to 572 MiB with 30 connections: 90 lines of 64 KB.
_HUGE_HEAD = (
    b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n"
    + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 65_000) for i in range(90))
    + b"\r\n"
)


def _biggest_allowed_head(index: int) -> bytes:
    """A GET whose head is just under HEAD_LIMIT: accepted, then it sleeps."""
    start = b"GET /flags/%02d/br.gif HTTP/1.1\r\nHost: t\r\n" % (index % 100)
    lines = [b"X-%d: %s\r\n" % (i, b"a" * 200) for i in range(60)]
    head = start + b"".join(lines)
    pad = HEAD_LIMIT - len(head) - len(b"X-Pad: \r\n\r\n") - 16
    return head + b"X-Pad: " + b"a" * pad + b"\r\n\r\n"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")  # pragma: no cover


@contextlib.contextmanager
def _delay_server(*args: str) -> Iterator[tuple[int, int]]:
    """Start DELAY in a child on a free port; yield its pid and port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flags2.servers", "delay", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        while "http://" not in line:
            assert line, "the server exited before its banner"
            line = proc.stdout.readline()
        yield proc.pid, int(line.split("http://", 1)[1].split("/")[0].rsplit(":")[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _get(port: int, target: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        with sock.makefile("rb") as reader:
            response = read_response(reader)
    return response.status, response.body


def _in_flight(port: int) -> int:
    status, body = _get(port, "/_stats")
    assert status == 200
    return int(json.loads(body)["in_flight"])


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    # The server may answer 431 and close while we are still sending.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_big_heads_on_many_connections_keep_the_server_small() -> None:
    count = 40
    with (
        _delay_server("--min-delay", "2.5", "--max-delay", "3", "--seed", "1") as (
            pid,
            port,
        ),
        contextlib.ExitStack() as stack,
    ):
        # Warm up threads and buffers (/_stats is never delayed).
        warm = [threading.Thread(target=_in_flight, args=(port,)) for _ in range(8)]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()
        before = _rss_mib(pid)
        normal: list[int] = []
        getter = threading.Thread(
            target=lambda: normal.append(_get(port, "/flags/br/br.gif")[0])
        )
        getter.start()
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            for _ in range(2 * count)
        ]
        senders = [
            threading.Thread(target=_send_quietly, args=(sock, _HUGE_HEAD))
            for sock in socks[:count]
        ]
        senders += [
            threading.Thread(
                target=_send_quietly, args=(sock, _biggest_allowed_head(i))
            )
            for i, sock in enumerate(socks[count:])
        ]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=30)
        # The accepted ones sleep their delay now; meanwhile, stats and a
        # normal GET are still answered.
        deadline = time.monotonic() + 3
        while (in_flight := _in_flight(port)) <= count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight == count + 1  # and the normal GET
        during = _rss_mib(pid)
        # Unbounded, the huge heads alone took this past 500 MiB.
        assert during - before < 40, f"{before:.1f} -> {during:.1f} MiB"
        getter.join(timeout=10)
        assert normal == [200]
        # The huge heads were refused, not parsed: 431 and closed.
        for sock in socks[:3]:
            with sock.makefile("rb") as reader:
                assert read_response(reader).status == 431
