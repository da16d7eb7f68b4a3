"""https on the lean transports: TLS, keep-alive, the idle check, the ALPN probe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from pytest_httpserver import HTTPServer

from flags2.aioclients import AsyncPlainHTTPTransport
from flags2.clientplan import STREAMS_PER_CONNECTION, ClientPlan
from flags2.clients import PlainHTTPTransport, _Conn
from flags2.processes import worker_settings
from flags2.settings import Settings
from flags2.status import DownloadStatus
from flags2.tls import lean_context, negotiated
from tests.helpers import (
    MODES,
    Answers,
    KeptAlive,
    RunFn,
    TLSServer,
    flag_bytes,
    recorded_run,
)

_GIF = flag_bytes("BR")
_GOOD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: %d\r\n\r\n"
    % len(_GIF)
    + _GIF
)
_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
_408 = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"


def _run(
    mode: str, base_url: str, dest: Path, json_path: Path, **options: Any
) -> tuple[int, dict[str, Any]]:
    """A whole run (runner.run) with its --json record read back."""
    fields: dict[str, Any] = {"concurrency": 2}
    fields.update(options)
    codes = fields.pop("codes", ["BR", "CN", "IN", "US", "ZZ"])
    return recorded_run(mode, base_url, dest, json_path, codes, **fields)


# -- which transport an https run takes ----------------------------------------


def _plan(base_url: str, **options: Any) -> ClientPlan:
    return ClientPlan.for_run(Settings(base_url=base_url, concurrency=1000, **options))


def test_the_alpn_answer_picks_the_transport(
    trusted: str, test_ca: tuple[str, str], tls_server: TLSServer
) -> None:
    h2 = _plan(f"{tls_server.url}/flags")
    assert h2.http2 and not h2.lean
    assert len(h2.sizes) == 1000 // STREAMS_PER_CONNECTION
    with TLSServer(test_ca[1], protocols=("http/1.1",)) as only_http1:
        plan = _plan(f"{only_http1.url}/flags")
    assert plan.lean and plan.sizes == [1000]  # one client holds every slot
    assert len(only_http1.clients) == 0  # the probe sent no request


def test_a_process_pool_asks_its_server_once_for_every_worker(
    trusted: str, test_ca: tuple[str, str], tls_server: TLSServer
) -> None:
    # The parent asks; each worker's clients go by its answer, unasked.
    settings = Settings(base_url=f"{tls_server.url}/flags", concurrency=20)
    worker, alpn = worker_settings(settings)
    assert (alpn, worker.http2, worker.concurrency) == ("h2", True, 1)
    assert ClientPlan.for_run(worker, alpn).http2
    with TLSServer(test_ca[1], protocols=("http/1.1",)) as only_http1:
        settings = Settings(base_url=f"{only_http1.url}/flags", concurrency=20)
        worker, alpn = worker_settings(settings)
    assert (alpn, worker.http2) == ("http/1.1", False)
    assert ClientPlan.for_run(worker, alpn).lean  # no probe of its own needed
    # --http1.1: nothing to ask (a session the probe got would be the
    # parent's alone), and the workers ask nothing either.
    asked = Settings(base_url=f"{tls_server.url}/flags", concurrency=20, http2=False)
    assert worker_settings(asked)[1] == "http/1.1"


def test_http1_1_asked_for_is_lean(trusted: str, tls_server: TLSServer) -> None:
    plan = _plan(f"{tls_server.url}/flags", http2=False)
    assert plan.lean and plan.sizes == [1000] and plan.lean_tls and not plan.http2


def test_a_failed_probe_leaves_the_run_to_the_lean_transport(
    trusted: str, closed_port: int
) -> None:
    # Refused (or untrusted, or silent): the requests say why, each on a
    # connection of its own, never queued behind one HTTP/2 connection.
    plan = _plan(f"https://localhost:{closed_port}/flags")
    assert plan.lean and not plan.http2 and plan.lean_tls


def test_a_probe_that_gets_no_answer_gives_up_within_its_timeout(
    trusted: str, silent_tls_port: int
) -> None:
    url = f"https://127.0.0.1:{silent_tls_port}/flags"
    assert negotiated(url, lean_context(True), 0.2) is None


def test_a_probe_gives_up_on_a_slow_name_lookup_within_its_timeout(
    trusted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # getaddrinfo cannot be interrupted: the probe stops waiting for it.
    def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.0)
        raise socket.gaierror(socket.EAI_NONAME, "never answered in time")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    started = time.monotonic()
    assert negotiated("https://slow.test/flags", lean_context(True), 0.2) is None
    assert time.monotonic() - started < 1.0  # not the lookup's 2 s


def test_a_proxy_for_https_keeps_httpx2_transport(
    trusted: str, tls_server: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    for http2 in (True, False):
        plan = _plan(f"{tls_server.url}/flags", http2=http2)
        assert not plan.lean and not plan.http2
    # A plain-http run still goes lean, but hands https (a redirect) to httpx2.
    assert not _plan("http://127.0.0.1:8000/flags").lean_tls


# -- whole runs over TLS on the lean transports ---------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_http1_1_over_tls_keeps_connections_alive(
    mode: str, trusted: str, tls_server: TLSServer, dest: Path, tmp_path: Path
) -> None:
    code, record = _run(
        mode, f"{tls_server.url}/flags", dest, tmp_path / "r", http2=False
    )
    assert code == 0, [(f["cc"], f["error"]) for f in record["flags"] if f["error"]]
    assert record["counts"]["OK"] == 4 and record["counts"]["NOT_FOUND"] == 1
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/1.1"}
    assert tls_server.versions == {"1.1"}
    assert 1 <= len(tls_server.clients) <= 2 < 5  # 5 requests, 2 slots
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


@pytest.mark.parametrize("mode", MODES)
def test_an_http1_1_only_server_is_served_on_kept_alive_connections(
    mode: str, trusted: str, test_ca: tuple[str, str], dest: Path, tmp_path: Path
) -> None:
    # HTTP/2 offered, HTTP/1.1 answered: the lean transport, not a pool of
    # clients each with its own connections.
    with TLSServer(test_ca[1], protocols=("http/1.1",)) as server:
        code, record = _run(
            mode, f"{server.url}/flags", dest, tmp_path / "r", concurrency=1
        )
    assert code == 0 and record["counts"]["OK"] == 4
    assert {flag["http_version"] for flag in record["flags"]} == {"HTTP/1.1"}
    assert len(server.clients) == 1  # one connection carried all 5 requests


@pytest.mark.parametrize("mode", MODES)
def test_a_redirect_from_http_to_https_is_followed(
    mode: str, trusted: str, tls_server: TLSServer, httpserver: HTTPServer,
    dest: Path, tmp_path: Path,
) -> None:  # fmt: skip
    target = f"{tls_server.url}/flags/br/br.gif"
    httpserver.expect_request("/flags/br/br.gif").respond_with_data(
        "", status=301, headers={"Location": target}
    )
    code, record = _run(
        mode, httpserver.url_for("/flags"), dest, tmp_path / "r", codes=["BR"]
    )
    assert code == 0
    (flag,) = record["flags"]
    assert flag["status"] == "OK" and flag["final_url"] == target
    assert flag["http_version"] == "HTTP/1.1"
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


def test_a_kept_alive_tls_connection_the_server_closed_is_retried(
    run_mode: RunFn,
    mode: str,
    trusted: str,
    test_ca: tuple[str, str],
    kept_alive: Callable[..., KeptAlive],
) -> None:
    # The second request meets a close on the reused connection (the server's
    # keep-alive timeout raced it): a fresh connection, not an error.
    server = kept_alive([[(0, _GOOD)], [(0, b"")], [(0, _GOOD)]], test_ca[1])
    tracker = run_mode(["BR", "CN"], base_url=server.url, concurrency=1, http2=False)
    assert tracker.counter[DownloadStatus.OK] == 2
    assert tracker.counter[DownloadStatus.ERROR] == 0
    # First the probe (it asks nothing), whose session seeds the run's, but
    # in a process pool: a worker could not use the parent's session.
    probe = 0 if mode == "processpool" else 1
    numbers = [number - probe for number, _ in server.requests]
    assert numbers == [1, 1, 2]


def test_a_tls_connection_closed_while_idle_is_replaced(
    run_mode: RunFn,
    mode: str,
    trusted: str,
    test_ca: tuple[str, str],
    kept_alive: Callable[..., KeptAlive],
) -> None:
    server = kept_alive([[(0, _GOOD), (0, b"")], [(0, _GOOD)]], test_ca[1])
    tracker = run_mode(["BR", "CN"], base_url=server.url, concurrency=1, http2=False)
    assert tracker.counter[DownloadStatus.OK] == 2
    probe = 0 if mode == "processpool" else 1  # as in the test above
    assert server.connections == 2 + probe


def test_keep_alive_over_tls_reuses_one_connection(
    trusted: str,
    test_ca: tuple[str, str],
    kept_alive: Callable[[Answers, str], KeptAlive],
) -> None:
    # Session tickets arrive after the handshake: no byte, so no reason to drop it.
    for kind in ("blocking", "async"):
        server = kept_alive([[(0.0, _404)]] * 3, test_ca[1])
        url = server.url + "/zz/zz.gif"
        if kind == "blocking":
            with httpx.Client(transport=PlainHTTPTransport()) as client:
                answers = [client.get(url) for _ in range(3)]
        else:

            async def thrice(url: str = url) -> list[httpx.Response]:
                transport = AsyncPlainHTTPTransport()
                async with httpx.AsyncClient(transport=transport) as client:
                    return [await client.get(url) for _ in range(3)]

            answers = asyncio.run(thrice())
        assert [a.status_code for a in answers] == [404] * 3, kind
        assert {a.extensions["http_version"] for a in answers} == {b"HTTP/1.1"}
        assert server.connections == 1, kind


# -- the blocking idle check on an SSLSocket -----------------------------------


@pytest.fixture
def tls_pair(
    trusted: str, test_ca: tuple[str, str]
) -> Iterator[Callable[[], tuple[ssl.SSLSocket, ssl.SSLSocket]]]:
    """Connected (client, server) TLS 1.3 sockets: the server sends tickets."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    server_context.load_cert_chain(test_ca[1])
    client_context = lean_context(True)
    opened: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def connect() -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
        raw = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        client = client_context.wrap_socket(
            raw, server_hostname="localhost", do_handshake_on_connect=False
        )
        opened.append(client)
        client.setblocking(False)
        server = server_context.wrap_socket(
            accepted, server_side=True, do_handshake_on_connect=False
        )
        opened.append(server)
        server.setblocking(False)
        for _ in range(100):  # both sides in one thread, each step non-blocking
            done = 0
            for side in (client, server):
                try:
                    side.do_handshake()
                    done += 1
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    select.select([side], [], [], 0.1)
            if done == 2:
                break
        client.setblocking(True)
        server.setblocking(True)
        return client, server

    yield connect
    for sock in opened:
        sock.close()
    listener.close()


def _readable(sock: socket.socket) -> None:
    # The peer's records reach a loopback socket at once; wait anyway.
    assert select.select([sock], [], [], 5)[0]


def test_the_idle_check_reads_the_tls_layer(
    tls_pair: Callable[[], tuple[ssl.SSLSocket, ssl.SSLSocket]],
) -> None:
    for peer_does in ("tickets only", "sends", "close_notify", "closes"):
        client, server = tls_pair()
        conn = _Conn(client, ("https", "localhost", 443))
        if peer_does == "sends":
            server.sendall(_408)
        elif peer_does == "close_notify":
            server.setblocking(False)
            with contextlib.suppress(ssl.SSLWantReadError):
                server.unwrap()
        elif peer_does == "closes":
            server.close()
        _readable(client)  # tickets, at least, are on their way
        assert conn.idle_and_open() is (peer_does == "tickets only"), peer_does


def test_a_byte_already_decrypted_is_never_lent_again(
    tls_pair: Callable[[], tuple[ssl.SSLSocket, ssl.SSLSocket]],
) -> None:
    # Two records' worth in one: the first answer read, the rest buffered
    # inside the TLS layer (pending), where no peek at the socket sees it.
    client, server = tls_pair()
    server.sendall(_404 + _408)
    client.settimeout(5)
    assert client.recv(len(_404)) == _404
    assert client.pending()
    assert not _Conn(client, ("https", "localhost", 443)).idle_and_open()


def test_a_handshake_that_never_ends_is_a_connect_timeout(
    trusted: str, silent_tls_port: int
) -> None:
    # The TLS handshake is part of the connection: its deadline is --timeout's.
    url = f"https://127.0.0.1:{silent_tls_port}/flags/br/br.gif"
    timeout = httpx.Timeout(5.0, connect=0.2)
    with (
        httpx.Client(transport=PlainHTTPTransport(), timeout=timeout) as client,
        pytest.raises(httpx.ConnectTimeout),
    ):
        client.get(url)

    async def once() -> None:
        transport = AsyncPlainHTTPTransport()
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            await client.get(url)

    with pytest.raises(httpx.ConnectTimeout):
        asyncio.run(once())


def test_an_untrusted_certificate_is_a_connect_error_from_the_ssl_error(
    test_ca: tuple[str, str],
    kept_alive: Callable[[Answers, str], KeptAlive],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As httpx2's own transport raises it: failures.cause_of reads the chain.
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    url = kept_alive([], test_ca[1]).url + "/br/br.gif"
    with (
        httpx.Client(transport=PlainHTTPTransport()) as client,
        pytest.raises(httpx.ConnectError) as blocking,
    ):
        client.get(url)

    async def once() -> None:
        async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
            await client.get(url)

    with pytest.raises(httpx.ConnectError) as in_asyncio:
        asyncio.run(once())
    for raised in (blocking.value, in_asyncio.value):
        assert isinstance(raised.__cause__, ssl.SSLCertVerificationError)


def _open_descriptors(port: int) -> int:
    """This process's sockets connected to `port` on loopback (Linux's /proc).

    Only those: other tests' threads in this process may close descriptors of
    their own meanwhile, which a count of every descriptor would take for ours.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    mine = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            mine += os.readlink(f"/proc/self/fd/{fd}") in inodes
    return mine


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="/proc (Linux)")
def test_a_failed_handshake_leaves_no_socket_open(
    trusted: str, silent_tls_port: int
) -> None:
    # wrap_socket takes the descriptor over: the SSLSocket is what to close.
    # The errors are kept, as a run's results keep theirs: a socket left open
    # would live as long as their tracebacks.
    url = f"https://127.0.0.1:{silent_tls_port}/flags/br/br.gif"
    timeout = httpx.Timeout(5.0, connect=0.1)
    errors: list[httpx.HTTPError] = []
    with httpx.Client(transport=PlainHTTPTransport(), timeout=timeout) as client:
        before = _open_descriptors(silent_tls_port)
        for _ in range(5):
            with pytest.raises(httpx.ConnectTimeout) as raised:
                client.get(url)
            errors.append(raised.value)
        assert _open_descriptors(silent_tls_port) == before


def test_an_unreadable_ca_file_opens_no_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The context is made before any socket: a bad SSL_CERT_FILE is a local
    # error, with nothing connected to the server for it (nor left open).
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/flags/br/br.gif"

        async def once() -> None:
            async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
                await client.get(url)

        with pytest.raises(httpx.ConnectError):
            asyncio.run(once())
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was ever made


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_while_the_probe_waits_cancels_and_reports(
    mode: str, trusted: str, silent_tls_port: int, tmp_path: Path
) -> None:
    # The ALPN probe waits up to --timeout on a silent server: a stop then is
    # a stop like any other, every flag cancelled and the report written.
    record = tmp_path / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flags2", "download", "--mode", mode, "--no-serve",
         "-s", f"https://127.0.0.1:{silent_tls_port}/flags", "-d", str(tmp_path / "d"),
         "--json", str(record), "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    # The run has begun once its first lines are out (flushed at once, though
    # stdout is a pipe); a run that never says so is killed, not waited on.
    guard = threading.Timer(20, proc.kill)
    guard.start()
    for line in proc.stdout:
        if "will be used" in line:
            break
    guard.cancel()
    time.sleep(0.5)  # into the probe's wait
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "20 cancelled." in out
    assert json.loads(record.read_text())["counts"]["CANCELLED"] == 20
