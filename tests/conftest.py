"""Shared fixtures: real servers on loopback, and settings pointing at them.

The plain functions and types the tests share are in :mod:`tests.helpers`.

pytest-httpserver is made threaded (concurrent modes need a server that
answers concurrently) and answers unmatched paths with 404, as a static
server would, instead of its default 500.
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flags2.processes import START_METHOD_ENV
from flags2.runner import load_mode
from flags2.settings import Settings
from flags2.tracker import Tracker
from tests.helpers import (
    FLAKY_FAULTS,
    MODES,
    Answers,
    DiesWithParent,
    FakeDNS,
    Flaky,
    KeptAlive,
    RunFn,
    Script,
    TLSServer,
    accept_in_threads,
    flag_bytes,
)

# A suite started as a background job (``pytest &`` in a script) inherits an
# ignored SIGINT, and so would every command it starts: flags2 rightly keeps
# an inherited ignore, and the Ctrl-C tests would see nothing. A handler here
# (any but SIG_IGN) means children start with the default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Many tests plant a fault in this process (monkeypatch) and run the process
# pool here: its workers see the fault only if they are forks of this process.
# A run's own default is forkserver on Linux (flags2.processes.start_context),
# which its own tests check with this variable removed.
if "fork" in multiprocessing.get_all_start_methods():
    os.environ.setdefault(START_METHOD_ENV, "fork")


@pytest.fixture(scope="session", autouse=True)
def _children_die_with_the_tests() -> Iterator[None]:
    """No command a test starts outlives the test process (`DiesWithParent`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", DiesWithParent)
        yield


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def httpserver(make_httpserver: HTTPServer) -> HTTPServer:
    make_httpserver.clear()
    make_httpserver.clear_all_handlers()
    make_httpserver.no_handler_status_code = 404
    return make_httpserver


@pytest.fixture
def base_url(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/flags")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "downloaded"
    folder.mkdir()
    return folder


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_mode(mode: str, base_url: str, dest: Path) -> RunFn:
    """Run `mode`'s download_many over codes; keyword arguments go to Settings."""

    def run(cc_list: list[str], **options: object) -> Tracker:
        module = load_mode(mode)
        fields: dict[str, object] = {
            "base_url": base_url,
            "dest": dest,
            # At most one slot a code, as runner.effective_concurrency gives:
            # a process pool starts every worker it is asked for.
            "concurrency": min(module.MAX_CONCUR_REQ, 10, len(cc_list)),
            "timeout": 5.0,
        }
        fields.update(options)
        settings = Settings(**fields)  # type: ignore[arg-type]
        tracker = Tracker(sorted(cc_list), settings)
        module.download_many(sorted(cc_list), settings, tracker)
        return tracker

    return run


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scripted() -> Iterator[Script]:
    """Servers that answer each request with (pause, bytes) steps, then close.

    For what well-behaved servers refuse to send: a body shorter than its
    Content-Length, a head that stops halfway, answers spaced out in time.
    Pauses still running at teardown end at once.
    """
    listeners: list[socket.socket] = []
    done = threading.Event()

    def start(steps: list[tuple[float, bytes]]) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve(conn: socket.socket) -> None:
            with conn, conn.makefile("rb") as request, contextlib.suppress(OSError):
                while request.readline() not in (b"\r\n", b"\n", b""):
                    pass  # the client may leave first: suppressed above
                for pause, data in steps:
                    if done.wait(pause):
                        return
                    conn.sendall(data)

        accept_in_threads(listener, serve)
        return f"http://127.0.0.1:{listener.getsockname()[1]}/flags"

    yield start
    done.set()
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)  # wakes its accept() thread
        listener.close()


@pytest.fixture
def raw_server(scripted: Script) -> Callable[[bytes], str]:
    """A server that answers every request with fixed raw bytes, then closes.

    Call it with the bytes; it returns the base URL.
    """
    return lambda answer: scripted([(0, answer)])


@pytest.fixture
def flaky() -> Iterator[Callable[[str, int], Flaky]]:
    """A server whose first `failures` requests for BR's flag meet `fault`.

    Every later request for it gets the whole flag (on a connection kept
    alive); any other path is a 404. `fault` is one of FLAKY_FAULTS:

    - ``reset``: a TCP RST once the request is read, before any byte;
    - ``truncate``: the whole Content-Length, half the body, then close;
    - ``truncate-chunked``: chunks up to half the body, then close (no last chunk);
    - ``silent``: not a byte, until the client leaves (or the test ends);
    - ``stall``: the head, then nothing, as the ERROR server's stall.
    """
    listeners: list[socket.socket] = []
    done = threading.Event()
    body = flag_bytes("BR")
    whole = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"
    faults: dict[str, bytes] = {
        "truncate": whole + b"Content-Length: %d\r\n\r\n" % len(body)
        + body[: len(body) // 2],
        "truncate-chunked": whole + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (
            body[i : i + 500] for i in range(0, len(body) // 2, 500))),
        "stall": whole + b"Content-Length: %d\r\n\r\n" % len(body),
    }  # fmt: skip
    good = whole + b"Content-Length: %d\r\n\r\n" % len(body) + body
    # Closed after a 404: a reset on a reused connection is rightly retried at
    # once on a new one (a keep-alive race, not a fault), which is not tested here.
    not_found = (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )

    def start(fault: str, failures: int) -> Flaky:
        assert fault in FLAKY_FAULTS, fault
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        seen = Flaky(f"http://127.0.0.1:{listener.getsockname()[1]}/flags")

        def misbehave(conn: socket.socket) -> None:
            if fault == "reset":  # SO_LINGER 0: close() sends RST, not FIN
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                return
            conn.sendall(faults.get(fault, b""))
            if fault in ("silent", "stall"):
                done.wait(30)

        def serve(conn: socket.socket) -> None:
            with conn, conn.makefile("rb") as request, contextlib.suppress(OSError):
                while line := request.readline():
                    while request.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    if not line.startswith(b"GET /flags/br/br.gif "):
                        conn.sendall(not_found)
                        return
                    if seen.arrived() <= failures:
                        misbehave(conn)
                        return
                    conn.sendall(good)

        accept_in_threads(listener, serve)
        return seen

    yield start
    done.set()
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.fixture
def kept_alive() -> Iterator[Callable[[Answers], KeptAlive]]:
    """A server that keeps connections open and answers the n-th request it
    gets (over all connections) with the n-th list of (pause, bytes) steps.

    For what happens after a complete answer: junk or a second answer on the
    same connection, a close while idle. It never closes a connection itself
    unless a step is ``b""`` (then it closes right there). Given `certfile`
    (cert and key), it speaks TLS, at ``https://localhost:port``.
    """
    listeners: list[socket.socket] = []
    done = threading.Event()

    def start(answers: Answers, certfile: str | None = None) -> KeptAlive:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        port = listener.getsockname()[1]
        seen = KeptAlive(
            f"https://localhost:{port}/flags"
            if certfile
            else f"http://127.0.0.1:{port}/flags"
        )
        lock = threading.Lock()
        context = None
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile)

        def serve(conn: socket.socket, number: int) -> None:
            if context is not None:
                try:
                    conn = context.wrap_socket(conn, server_side=True)
                except OSError:  # a client that does not trust it, say
                    conn.close()
                    return
                seen.resumed[number] = bool(conn.session_reused)
            with conn, conn.makefile("rb") as request, contextlib.suppress(OSError):
                while line := request.readline():
                    target = line.split(b" ")[1] if b" " in line else b""
                    while request.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    with lock:
                        seen.requests.append((number, target))
                        if len(seen.requests) > len(answers):
                            return
                        steps = answers[len(seen.requests) - 1]
                    for pause, data in steps:
                        if done.wait(pause):
                            return
                        if not data:
                            return
                        conn.sendall(data)
                        seen.sent.release()

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    with lock:
                        seen.connections += 1
                        number = seen.connections
                    threading.Thread(
                        target=serve, args=(conn, number), daemon=True
                    ).start()

        threading.Thread(target=accept, daemon=True).start()
        return seen

    yield start
    done.set()
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.fixture
def tls_one_a_connection(
    trusted: str,
    test_ca: tuple[str, str],
    kept_alive: Callable[[Answers, str], KeptAlive],
) -> KeptAlive:
    """A trusted TLS server that answers each request (up to 4) with BR's flag
    and ``Connection: close``: each request a handshake, resumed or not
    (``KeptAlive.resumed``)."""
    gif = flag_bytes("BR")
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    return kept_alive([[(0, head % len(gif) + gif), (0, b"")]] * 4, test_ca[1])


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDNS]:
    """Name resolution without a network: see :class:`tests.helpers.FakeDNS`.

    ``socket.getaddrinfo`` is patched; asyncio's ``loop.getaddrinfo`` calls it
    in its executor, so both transports, and httpx's own, ask it.
    """
    dns = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            dns.asked.append(name)
        else:
            return real(host, port, *args, **kwargs)
        if name not in dns.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        dns.ended.wait(dns.delays.get(name, 0))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
             (ip, int(port) if number is None else number))
            for ip, number in dns.names[name]
        ]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield dns
    dns.ended.set()


@pytest.fixture
def silent_address() -> Iterator[tuple[str, int]]:
    """A loopback address whose connections never complete (and never fail).

    A listener with a backlog of 0 that nobody accepts from, filled until a
    connection stops completing: the kernel then drops every new SYN, as a
    black-holed host would, so a connect waits for its own timeout.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket()
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect(listener.getsockname())
            except TimeoutError:
                break
        else:
            pytest.fail("the listen queue never filled")
        yield listener.getsockname()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A proxy that records each request line and refuses it (403, then closes).

    Yields its URL and the request lines it got, such as
    ``b"CONNECT host:443 HTTP/1.1"`` for an https URL.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    lines: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as request, contextlib.suppress(OSError):
            lines.append(request.readline().rstrip(b"\r\n"))
            while request.readline() not in (b"\r\n", b"\n", b""):
                pass
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    accept_in_threads(listener, serve)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", lines
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A trustme CA and a localhost certificate: (CA file, server cert+key file)."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, server_file = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_file))
    return str(ca_file), str(server_file)


@pytest.fixture
def trusted(test_ca: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The test CA named in SSL_CERT_FILE, as a user trusts a CA; its file."""
    monkeypatch.setenv("SSL_CERT_FILE", test_ca[0])
    return test_ca[0]


@pytest.fixture
def tls_server(test_ca: tuple[str, str], httpserver: HTTPServer) -> Iterator[TLSServer]:
    """HTTP/2 and HTTP/1.1 over TLS; ``/down/`` redirects to `httpserver`."""
    with TLSServer(test_ca[1], plain_url=httpserver.url_for("/flags")) as server:
        yield server


@pytest.fixture
def silent_tls_port() -> Iterator[int]:
    """A listener that accepts and never answers: a TLS handshake waits on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1]
    listener.close()
