"""Every fault kind as an httpx2 client sees it, and what goes over the wire."""

from __future__ import annotations

import io
import re
import socket
import time
import tracemalloc
from pathlib import Path

import httpx2 as httpx
import pytest

from flags2.servers.options import data_dir, parse_faults
from flags2.servers.plan import planned
from flags2.servers.server import FlagServer
from flags2.servers.testing import ServerFactory, raw_request, read_response

GIF = "/flags/br/br.gif"


def _faulty(start_server: ServerFactory, kind: str, **overrides: object) -> FlagServer:
    return start_server("error", error_rate=1.0, faults=parse_faults(kind), **overrides)


def test_teapot(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "teapot")
    with httpx.Client(base_url=server.root_url) as client:
        response = client.get(GIF)
        with pytest.raises(httpx.HTTPStatusError, match="418 I'm a Teapot"):
            response.raise_for_status()
        assert response.reason_phrase == "I'm a Teapot"
        assert int(response.headers["content-length"]) == len(response.content)
        assert client.get(GIF).status_code == 418  # same connection still usable
        assert client.get("/_stats").json()["connections"] == 1


def test_unavailable_sends_retry_after(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "unavailable")
    with httpx.Client(base_url=server.root_url) as client:
        response = client.get(GIF)
    assert response.status_code == 503
    assert response.reason_phrase == "Service Unavailable"
    assert response.headers["retry-after"] == "1"


def test_reset_is_a_read_error(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "reset")
    with (
        httpx.Client(base_url=server.root_url) as client,
        pytest.raises(httpx.ReadError),
    ):
        client.get(GIF)
    # On the wire: a TCP RST and not a single byte of response.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET {GIF} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    stats = server.stats.snapshot()
    assert stats["requests"] == {"reset": 2}
    assert stats["faults"] == {"reset": 2}


def test_truncate_sends_half_the_body(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "truncate")
    with (
        httpx.Client(base_url=server.root_url) as client,
        pytest.raises(
            httpx.RemoteProtocolError,
            match="closed connection without sending complete",
        ),
    ):
        client.get(GIF)
    whole = (data_dir() / "flags/br/br.gif").read_bytes()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET {GIF} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        reader = sock.makefile("rb")
        head = read_response(reader)
        reader.close()
    assert head.status == 200
    assert head.headers["content-length"] == str(len(whole))
    assert head.body == whole[: len(whole) // 2]  # then EOF


def test_stall_sends_headers_then_nothing(start_server: ServerFactory) -> None:
    stall = 1.0  # short, so the test can watch all of it
    server = _faulty(start_server, "stall", stall=stall)
    timeout = httpx.Timeout(5.0, read=0.2)
    with httpx.Client(base_url=server.root_url, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get(GIF)
        assert time.monotonic() - started < 0.8  # the timeout, not the stall's end
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET {GIF} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        head_came = time.monotonic()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b""
        # Not a byte for the whole stall, then the close: the first recv after
        # the head returns only at the end, and returns the end (EOF).
        assert sock.recv(1) == b""
        silent = time.monotonic() - head_came
    assert silent > stall - 0.3, silent  # margin: the head is read a bit late


def test_html_is_a_200_with_an_html_page(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "html")
    with httpx.Client(base_url=server.root_url) as client:
        response = client.get(GIF)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not response.content.startswith(b"GIF8")
    assert "<html" in response.text


def test_faults_spare_head_and_stats(start_server: ServerFactory) -> None:
    server = _faulty(start_server, "reset")
    assert raw_request(server.port, GIF, "HEAD").status == 200
    assert raw_request(server.port, "/_stats").status == 200


def test_log_lines_are_book_style(start_server: ServerFactory) -> None:
    log = io.StringIO()
    server = _faulty(start_server, "teapot", log=True, log_stream=log)
    raw_request(server.port, GIF)
    raw_request(server.port, "/flags/br/metadata.json")
    # The line is written once the answer is out, so it may trail the reply.
    deadline = time.monotonic() + 5
    while len(log.getvalue().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"BR delay: \d\.\d\ds 418 teapot", lines[0])
    assert re.fullmatch(
        r"/flags/br/metadata\.json delay: \d\.\d\ds 418 teapot", lines[1]
    )
    assert len(lines) == 2


@pytest.mark.parametrize("path", ["/flags/", "/", "/flags/br/missing.gif"])
def test_a_retried_listing_or_404_gets_a_new_plan_each_time(
    start_server: ServerFactory, path: str
) -> None:
    # Seed 14 faults the first GET of each of these paths.
    server = start_server("error", seed=14, error_rate=0.5)
    plans = [planned(14, "error", path, nth, server.options) for nth in range(6)]
    assert plans[0].fault == "teapot"
    assert None in (plan.fault for plan in plans)
    with httpx.Client(base_url=server.root_url) as client:
        statuses = [client.get(path).status_code for _ in plans]
    # Planned by their count as flags are: a retry eventually gets through.
    answer = 404 if path.endswith(".gif") else 200
    assert statuses == [answer if plan.fault is None else 418 for plan in plans]


def test_truncate_copies_a_big_file_without_holding_it(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    size = 16 * 1024 * 1024
    (tmp_path / "big.bin").write_bytes(b"x" * size)
    server = _faulty(start_server, "truncate", directory=tmp_path)
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            received = len(head.partition(b"\r\n\r\n")[2])
            while chunk := sock.recv(65536):  # counted, not kept
                received += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"Content-Length: {size}\r\n".encode() in head
    assert received == size // 2
    # Rendered in memory, the whole file was there two or three times over.
    assert peak < size // 4, f"{peak / 2**20:.1f} MiB traced"
