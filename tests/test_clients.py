from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import flags2
from flags2 import portable
from flags2.aioclients import AsyncPlainHTTPTransport
from flags2.clientplan import lean_transport_fits
from flags2.clients import PlainHTTPTransport
from flags2.servers.testing import running
from flags2.status import DownloadStatus
from tests.helpers import LINUX_ONLY, KeptAlive, RunFn, Script, flag_bytes, kernel_bound


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


# -- the lean plain-http transport ---------------------------------------------

_GIF = flag_bytes("BR")


def _chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    return chunks + b"0\r\nX-Trailer: yes\r\n\r\n"


def test_connections_are_kept_alive_and_reused(run_mode: RunFn, dest: Path) -> None:
    codes = ["BR", "CN", "IN", "US", "ZZ"]
    with running("local") as server:
        tracker = run_mode(codes, base_url=server.base_url, concurrency=1)
        stats = server.stats.snapshot()
    assert tracker.counter[DownloadStatus.OK] == 4
    assert tracker.counter[DownloadStatus.NOT_FOUND] == 1
    assert stats["connections"] == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(
    raw_server: Callable[[bytes], str],
) -> None:
    # The raw server announces no `Connection: close` but hangs up after each
    # answer, as a server whose keep-alive timeout expired would.
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
    url = raw_server(answer) + "/zz/zz.gif"
    with httpx.Client(transport=PlainHTTPTransport()) as client:
        assert [client.get(url).status_code for _ in range(3)] == [404] * 3

    async def three() -> list[int]:
        async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
            return [(await client.get(url)).status_code for _ in range(3)]

    assert asyncio.run(three()) == [404] * 3


def test_a_proxy_in_the_environment_carries_every_request(
    monkeypatch: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    run_mode: RunFn,
    closed_port: int,
    dest: Path,
) -> None:
    # The flags' own server is down; only the proxy (httpx's own transport,
    # which honours HTTP_PROXY; the lean one does not) can bring BR.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/"))
    seen: list[str] = []

    def proxy(request: Request) -> Response:
        seen.append(request.url)
        return Response(_GIF, content_type="image/gif")

    httpserver.expect_request(re.compile(".*")).respond_with_handler(proxy)
    base = f"http://127.0.0.1:{closed_port}/flags"
    assert not lean_transport_fits(base)
    result = run_mode(["BR"], base_url=base).results["BR"]
    assert result.status is DownloadStatus.OK
    assert (dest / "BR.gif").read_bytes() == _GIF
    assert seen == [f"{base}/br/br.gif"]


def test_header_values_cannot_inject_lines() -> None:
    url = "http://127.0.0.1:9/flags/br/br.gif"  # never reached: refused before
    headers = {"X-A": "1\r\nX-Injected: yes"}
    with (
        httpx.Client(transport=PlainHTTPTransport()) as client,
        pytest.raises(httpx.LocalProtocolError, match="Illegal header"),
    ):
        client.get(url, headers=headers)

    async def send() -> None:
        async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
            await client.get(url, headers=headers)

    with pytest.raises(httpx.LocalProtocolError, match="Illegal header"):
        asyncio.run(send())


_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
_408 = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_bytes_sent_while_idle_are_never_read_as_the_next_answer(
    kept_alive: Callable[..., KeptAlive], scheme: str, request: pytest.FixtureRequest
) -> None:
    # Answers 404, then, idle, a stray 408 (some servers do); the client asks
    # again only once the 408 is on the wire: counted, not slept for. Over TLS
    # too, where the idle check reads the TLS layer, not the socket.
    tls: list[str] = []
    if scheme == "https":
        request.getfixturevalue("trusted")  # SSL_CERT_FILE names the test CA
        tls.append(request.getfixturevalue("test_ca")[1])
    for kind in ("blocking", "async"):
        server = kept_alive([[(0.0, _404), (0.05, _408)], [(0.0, _404)]], *tls)
        url = server.url + "/zz/zz.gif"
        if kind == "blocking":
            with httpx.Client(transport=PlainHTTPTransport()) as client:
                first = client.get(url).status_code
                assert server.sent.acquire(timeout=10) and server.sent.acquire(
                    timeout=10
                )
                second = client.get(url).status_code
        else:

            async def twice(url: str = url, server: KeptAlive = server) -> list[int]:
                transport = AsyncPlainHTTPTransport()
                async with httpx.AsyncClient(transport=transport) as client:
                    first = (await client.get(url)).status_code
                    for _ in range(2):
                        assert await asyncio.to_thread(server.sent.acquire, True, 10)
                    await asyncio.sleep(0.05)  # let the loop read what arrived
                    return [first, (await client.get(url)).status_code]

            first, second = asyncio.run(twice())
        assert (first, second) == (404, 404), kind
        assert server.connections == 2, kind  # the dirty one was dropped


@pytest.fixture
def stalled_head(scripted: Script) -> str:
    """A server that sends a status line, then nothing, and never closes."""
    return scripted([(0, b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"), (10, b"")])


def test_a_head_that_stops_after_its_status_line_times_out(
    stalled_head: str, run_mode: RunFn, dest: Path
) -> None:
    started = time.perf_counter()
    result = run_mode(["BR"], base_url=stalled_head, timeout=0.3).results["BR"]
    assert time.perf_counter() - started < 3
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ReadTimeout" in result.error
    assert list(dest.iterdir()) == []


def test_interim_answers_do_not_restart_the_head_timeout(
    scripted: Script, run_mode: RunFn, dest: Path
) -> None:
    # Eight 100s 0.5 s apart, then the flag: every wait under the 1 s timeout,
    # the whole head (4 s) far over it. The whole head, interim answers
    # included, must arrive within --timeout.
    final = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_GIF), _GIF)
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    url = scripted([(0.5, interim)] * 8 + [(0, final)])
    result = run_mode(["BR"], base_url=url, timeout=1.0).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ReadTimeout" in result.error
    assert result.finished - result.started < 2.5  # 1 s, not 4 s
    assert list(dest.iterdir()) == []


def test_the_wait_for_the_body_starts_when_the_head_ends(
    scripted: Script, run_mode: RunFn, dest: Path
) -> None:
    # The head after 1 s, the body 1 s later: each wait under the 1.5 s
    # timeout, so the flag arrives though the whole answer takes 2 s.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(_GIF)
    url = scripted([(1.0, head), (1.0, _GIF)])
    result = run_mode(["BR"], base_url=url, timeout=1.5).results["BR"]
    assert (result.status, result.error) == (DownloadStatus.OK, None)
    assert (dest / "BR.gif").read_bytes() == _GIF


def test_every_request_says_it_comes_from_flags2(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("User-Agent", ""))
        return Response(_GIF, content_type="image/gif")

    httpserver.expect_request(re.compile("/flags/.*")).respond_with_handler(handler)
    run_mode(["BR", "CN"])
    assert seen == [f"flags2/{flags2.__version__}"] * 2


@pytest.mark.parametrize("bound", ["kernel", "socket"])
def test_a_stalled_answer_times_out_whoever_keeps_the_bound(
    stalled_head: str, bound: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's bound on a blocking socket (Linux, macOS), or the socket's
    # own timeout where the kernel's form is unknown (Windows): one ReadTimeout.
    if bound == "socket":
        monkeypatch.setattr(portable, "kernel_timeout", lambda *a, **k: False)
    with httpx.Client(transport=PlainHTTPTransport(), timeout=0.3) as client:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            client.get(stalled_head + "/br/br.gif")
    assert time.perf_counter() - started < 3


@LINUX_ONLY
@pytest.mark.parametrize("poll", [True, False])
def test_a_kept_alive_plain_connection_waits_in_the_kernel(
    kept_alive: Callable[..., KeptAlive],
    poll: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocking, with the bounds in the kernel: each send and receive is one
    # system call, with no poll before it. Without poll (Windows) the idle
    # check peeks in non-blocking mode, and the next request is blocking again.
    if not poll:
        monkeypatch.setattr(portable, "readable_now", lambda fd: None)
    server = kept_alive([[(0.0, _404)], [(0.0, _404)]])
    transport = PlainHTTPTransport()
    timeout = httpx.Timeout(2.5, write=1.5)  # whole jiffies at any HZ
    with httpx.Client(transport=transport, timeout=timeout) as client:
        for _ in range(2):
            assert client.get(server.url + "/zz/zz.gif").status_code == 404
            (conn,) = [c for conns in transport._idle.values() for c in conns]
            sock = conn.sock
            assert sock.gettimeout() is None
            bounds = [
                kernel_bound(sock, option)
                for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO)
            ]
            assert bounds == [(2, 500_000), (1, 500_000)]
    assert server.connections == 1
