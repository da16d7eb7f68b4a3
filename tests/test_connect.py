"""How the lean transports reach a server: proxies, host names, connect timeouts.

What :mod:`flags2.clients` and :mod:`flags2.aioclients` promise about a
connection, in every mode: an https redirect honours the proxy environment as
plain httpx2 does; the name looked up is the A-label the Host header carries;
``--timeout`` bounds a whole connection (the lookup and every address); an
idle connection is checked without ``select.poll``. Name resolution is faked
(:class:`tests.helpers.FakeDNS`): no test leaves loopback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import flags2.aioclients
import flags2.clients
from flags2.clientplan import lean_transport_fits
from flags2.clients import _Conn
from flags2.status import DownloadStatus
from tests.helpers import (
    IN_PROCESS_MODES,
    Answers,
    FakeDNS,
    KeptAlive,
    RunFn,
    flag_bytes,
    serve_flags,
)

GIF = flag_bytes("BR")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable in the environment, either case; set what a test needs."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def _redirect(httpserver: HTTPServer, path: str, location: str) -> None:
    httpserver.expect_request(path).respond_with_data(
        b"", status=301, headers={"Location": location}
    )


# -- an http->https redirect and the proxy environment -------------------------


@pytest.mark.parametrize(
    ("environment", "proxied"),
    [
        ({"HTTPS_PROXY": "{proxy}"}, True),
        ({"https_proxy": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTPS_PROXY": "{proxy}", "NO_PROXY": "*"}, False),
    ],
    ids=["HTTPS_PROXY", "https_proxy", "NO_PROXY-host", "NO_PROXY-star"],
)
def test_an_https_redirect_takes_the_proxy_plain_httpx2_takes(
    no_proxies: pytest.MonkeyPatch,
    recording_proxy: tuple[str, list[bytes]],
    httpserver: HTTPServer,
    base_url: str,
    run_mode: RunFn,
    closed_port: int,
    dest: Path,
    environment: dict[str, str],
    proxied: bool,
) -> None:
    # The flag URL is plain http (the lean transport carries it), and
    # redirects to https, which only the proxy could reach; it refuses (403).
    proxy, lines = recording_proxy
    for name, value in environment.items():
        no_proxies.setenv(name, value.format(proxy=proxy))
    _redirect(httpserver, "/flags/br/br.gif", f"https://127.0.0.1:{closed_port}/br")
    assert lean_transport_fits(base_url)
    with httpx.Client(follow_redirects=True) as plain, pytest.raises(httpx.HTTPError):
        plain.get(f"{base_url}/br/br.gif")
    expected = [f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1".encode()] if proxied else []
    assert lines == expected  # what plain httpx2 does
    lines.clear()
    result = run_mode(["BR"]).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert lines == expected
    assert list(dest.iterdir()) == []


# -- internationalised host names ----------------------------------------------


# The names asked are recorded here, so not in a process pool's workers.
@pytest.mark.parametrize("mode", IN_PROCESS_MODES)
def test_the_name_looked_up_is_the_a_label_the_host_header_names(
    no_proxies: pytest.MonkeyPatch,
    fake_dns: FakeDNS,
    httpserver: HTTPServer,
    run_mode: RunFn,
    closed_port: int,
    dest: Path,
) -> None:
    # IDNA 2003 (the socket layer's) maps straße to strasse; IDNA 2008
    # (httpx's, in the Host header) keeps the ß: xn--strae-oqa.
    for name in ("straße.example", "strasse.example", "xn--strae-oqa.example"):
        fake_dns.names[name] = [("127.0.0.1", None)]
    hosts: list[str] = []

    def handler(request: Request) -> Response:
        hosts.append(request.headers.get("Host", ""))
        return Response(GIF, content_type="image/gif")

    httpserver.expect_request("/flags/br/br.gif").respond_with_handler(handler)
    # CN goes on over https, through httpx's own transport: the same name.
    https = f"https://xn--strae-oqa.example:{closed_port}/flags/cn/cn.gif"
    _redirect(httpserver, "/flags/cn/cn.gif", https)
    base = f"http://straße.example:{httpserver.port}/flags"
    tracker = run_mode(["BR", "CN"], base_url=base, concurrency=1)
    assert tracker.results["BR"].status is DownloadStatus.OK
    assert (dest / "BR.gif").read_bytes() == GIF
    assert tracker.results["CN"].status is DownloadStatus.ERROR  # refused
    assert hosts == [f"xn--strae-oqa.example:{httpserver.port}"]
    assert set(fake_dns.asked) == {"xn--strae-oqa.example"}
    assert len(fake_dns.asked) >= 2  # the lean transport's, and the fallback's


# -- --timeout bounds a whole connection ----------------------------------------


@pytest.mark.timeout(30)
def test_a_slow_name_lookup_is_a_connect_timeout(
    fake_dns: FakeDNS, httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    # The lookup answers after 3 s; the connect timeout is 1 s.
    serve_flags(httpserver, ["BR"])
    fake_dns.names["slow.example"] = [("127.0.0.1", None)]
    fake_dns.delays["slow.example"] = 3.0
    base = f"http://slow.example:{httpserver.port}/flags"
    result = run_mode(["BR"], base_url=base, timeout=1.0).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ConnectTimeout" in result.error
    assert result.finished - result.started < 2.5  # 1 s, not 3 s
    assert list(dest.iterdir()) == []


@pytest.mark.timeout(30)
def test_every_address_tried_shares_one_connect_timeout(
    fake_dns: FakeDNS, silent_address: tuple[str, int], run_mode: RunFn, dest: Path
) -> None:
    # Three addresses that never answer: each would get the whole 1 s
    # timeout from socket.create_connection, 3 s in all.
    fake_dns.names["silent.example"] = [silent_address] * 3
    base = "http://silent.example/flags"
    result = run_mode(["BR"], base_url=base, timeout=1.0).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ConnectTimeout" in result.error
    assert result.finished - result.started < 2.5  # 1 s, not 3 s
    assert list(dest.iterdir()) == []


def test_a_refused_address_is_skipped_for_the_next_one(
    fake_dns: FakeDNS, httpserver: HTTPServer, run_mode: RunFn, closed_port: int
) -> None:
    serve_flags(httpserver, ["BR"])
    fake_dns.names["two.example"] = [
        ("127.0.0.1", closed_port),
        ("127.0.0.1", httpserver.port),
    ]
    base = "http://two.example/flags"
    result = run_mode(["BR"], base_url=base, timeout=2.0).results["BR"]
    assert (result.status, result.error) == (DownloadStatus.OK, None)


# -- an idle connection is checked without select.poll --------------------------


def _wait_readable(sock: socket.socket) -> None:
    # The peer's bytes, FIN or RST reach a loopback socket at once; wait
    # anyway (a blocking peek: select.select takes no descriptor over 1024).
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        sock.recv(1, socket.MSG_PEEK)


def _dup_over_1024(sock: socket.socket) -> int:
    """A free descriptor over FD_SETSIZE (1024) for `sock`, which is closed."""
    for fd in range(1500, 1600):
        try:
            os.fstat(fd)
        except OSError:  # not open: free to take
            break
    else:
        pytest.skip("descriptors 1500-1599 all in use")
    try:
        os.dup2(sock.fileno(), fd)
    except OSError as exc:
        pytest.skip(f"no descriptor {fd} here (ulimit -n): {exc}")
    sock.close()
    return fd


@pytest.mark.parametrize("high", [False, True], ids=["low-fd", "fd-over-1024"])
def test_the_idle_check_needs_no_select_poll(
    monkeypatch: pytest.MonkeyPatch, high: bool
) -> None:
    # Readable while idle means closed or garbage: never lent again.
    monkeypatch.delattr(select, "poll", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for peer_does in ("nothing", "sends", "closes", "resets"):
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            if high:  # select.select fails above FD_SETSIZE; the check must not
                client = socket.socket(fileno=_dup_over_1024(client))
            conn = _Conn(client, ("http", "127.0.0.1", 80))
            if peer_does == "sends":
                server.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            elif peer_does == "closes":
                server.close()
            elif peer_does == "resets":  # SO_LINGER 0: close sends an RST
                server.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                server.close()
            if peer_does != "nothing":
                _wait_readable(client)
            assert conn.idle_and_open() is (peer_does == "nothing"), peer_does
            conn.close()
            server.close()


def test_connections_are_reused_without_select_poll(
    monkeypatch: pytest.MonkeyPatch,
    kept_alive: Callable[[Answers], KeptAlive],
    run_mode: RunFn,
    dest: Path,
) -> None:
    monkeypatch.delattr(select, "poll", raising=False)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(GIF), GIF)
    server = kept_alive([[(0.0, answer)]] * 3)
    tracker = run_mode(["BR", "CN", "IN"], base_url=server.url, concurrency=1)
    assert tracker.counter[DownloadStatus.OK] == 3, tracker.results
    assert server.connections == 1


def test_a_host_name_no_resolver_can_take_is_that_flag_s_connect_error(
    run_mode: RunFn, dest: Path
) -> None:
    # A label over 63 bytes: getaddrinfo raises UnicodeError, not OSError.
    base = f"http://{'a' * 64}.example/flags"
    result = run_mode(["BR"], base_url=base).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ConnectError" in result.error
    assert "label" in result.error


# -- out of descriptors -----------------------------------------------------------


class _OutOfDescriptors:
    """The socket module, but its first `fails` new sockets fail with EMFILE."""

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    def socket(self, *args: Any, **kwargs: Any) -> socket.socket:
        if self.fails:
            self.fails -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return socket.socket(*args, **kwargs)


def test_out_of_descriptors_is_a_wait_never_a_flags_error(
    httpserver: HTTPServer, run_mode: RunFn, monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:  # fmt: skip
    # Other requests hold every descriptor and give theirs back as they end.
    serve_flags(httpserver, ["BR"])
    shim = _OutOfDescriptors(fails=3)
    monkeypatch.setattr(flags2.clients, "socket", shim)
    monkeypatch.setattr(flags2.aioclients, "socket", shim)
    result = run_mode(["BR"], retries=0).results["BR"]
    if mode == "processpool":  # its workers have their own socket module
        assert result.status is DownloadStatus.OK
        return
    assert result.status is DownloadStatus.OK, result.error
    assert result.attempts == 1 and shim.fails == 0
