"""What a hostile client can send: bad escapes, slow heads, bugs it could trigger."""

from __future__ import annotations

import errno
import http.server
import io
import json
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import flags2.servers.handler
from flags2 import portable
from flags2.servers.handler import STATS_PATH
from flags2.servers.limits import CONNECTIONS, AcceptBackoff
from flags2.servers.server import FlagServer, serve_in_thread
from flags2.servers.testing import ServerFactory, raw_request, read_response, running

BAD_ESCAPES = [
    "/%ff",
    "/%c0%ae%c0%ae/etc/passwd",  # overlong "..", the classic IIS traversal
    "/..%c0%af../etc/passwd",  # overlong "/"
    "/flags/%C0%80",  # overlong NUL
    "/flags/%ed%a0%80/",  # an encoded surrogate (U+D800)
    "/flags/br/%ff.gif",
    "/flags/%e2%82",  # a UTF-8 sequence cut short
]


def _pipelined(port: int, first: str) -> list[int]:
    """Send `first` then a good GET on one connection; return both statuses."""
    request = (
        f"GET {first} HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode("latin-1"))
        with sock.makefile("rb") as reader:
            return [read_response(reader).status for _ in range(2)]


@pytest.mark.parametrize("kind", ["local", "error"])
@pytest.mark.parametrize("target", BAD_ESCAPES)
def test_bad_escapes_are_400_and_the_connection_lives_on(
    target: str, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    log = io.StringIO()
    # error_rate 0 so the good GET after it is never faulted.
    with running(kind, log_stream=log, log=True, error_rate=0.0) as server:
        assert _pipelined(server.port, target) == [400, 200]
        assert server.stats.snapshot()["requests"] == {"200": 1, "400": 1}
    assert "Traceback" not in log.getvalue() + capfd.readouterr().err
    assert "error serving" not in log.getvalue()


def test_valid_escapes_still_reach_the_file(start_server: ServerFactory) -> None:
    server = start_server("local")
    assert _pipelined(server.port, "/flags/%62%72/br%2egif") == [200, 200]
    assert _pipelined(server.port, "/flags/%e2%82%ac/") == [404, 200]  # a real "€"


def test_a_bug_is_a_500_and_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(flags2.servers.handler, "planned", broken)
    log = io.StringIO()
    with running("delay", log_stream=log) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
            with sock.makefile("rb") as reader:
                response = read_response(reader)
            assert sock.recv(1) == b""  # closed: the stream may be out of step
        assert response.status == 500
        assert response.headers["connection"] == "close"
        deadline = time.monotonic() + 5
        while "planted bug" not in log.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = log.getvalue().splitlines()
    assert lines == ["error serving 127.0.0.1: RuntimeError: planted bug"]
    assert "Traceback" not in capfd.readouterr().err


def test_out_of_descriptors_for_a_file_is_503_not_404(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_descriptors(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    server = start_server("local")
    # SimpleHTTPRequestHandler.send_head opens the file with the builtin open.
    monkeypatch.setattr(http.server, "open", no_descriptors, raising=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
        with sock.makefile("rb") as reader:
            response = read_response(reader)
    assert response.status == 503
    assert response.headers["retry-after"] == "1"


def test_flag_paths_are_counted_each_and_others_in_shared_buckets(
    start_server: ServerFactory,
) -> None:
    server = start_server("delay")
    counted = ["/flags/br/br.gif", "/flags/zz/zz.gif", "/flags/br/metadata.json"]
    for path in counted:
        assert [server.next_nth(path) for _ in range(3)] == [0, 1, 2]
    for path in ["/flags/br/cn.gif", "/flags/", "/x" * 15_000, "/flags/BR/BR.gif"]:
        first = server.next_nth(path)
        assert [server.next_nth(path) for _ in range(2)] == [first + 1, first + 2]
    for i in range(20_000):  # whatever clients send, nothing more is kept
        server.next_nth(f"/flags/{i}/x")
    assert server.counted_paths == len(counted)


@pytest.fixture(params=["kernel", "socket", "send only"])
def bound(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Who keeps a connection's timeouts: the kernel (SO_RCVTIMEO on a blocking
    socket, Linux and macOS), the socket itself, as on Windows, or the kernel
    for sends but the socket for receives (a kernel that refused that bound)."""
    real = portable.kernel_timeout
    if request.param == "socket":
        monkeypatch.setattr(portable, "kernel_timeout", lambda *a, **k: False)
    elif request.param == "send only":

        def send_only(sock: socket.socket, *, send: bool, seconds: Any) -> bool:
            return send and real(sock, send=send, seconds=seconds)

        monkeypatch.setattr(portable, "kernel_timeout", send_only)
    return str(request.param)


def test_a_head_must_arrive_within_the_idle_timeout_of_its_first_byte(
    start_server: ServerFactory, bound: str
) -> None:
    server = start_server("local", idle_timeout=0.5)
    head = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    closed_after = None
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        for byte in head:  # one byte each 50 ms: every read well inside 0.5 s
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
                if select.select([sock], [], [], 0)[0] and sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except OSError:  # reset: the server closed it while we wrote
                closed_after = time.monotonic() - started
                break
    # A per-read timeout would have kept it open for the 5+ s of trickling.
    assert closed_after is not None
    assert 0.4 < closed_after < 2.5


def test_a_slow_but_steady_client_within_the_limit_is_served(
    start_server: ServerFactory, bound: str
) -> None:
    server = start_server("local", idle_timeout=2.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for part in (b"GET /flags/br/br.gif HT", b"TP/1.1\r\nHost: t\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.2)
        with sock.makefile("rb") as reader:
            assert read_response(reader).status == 200
        # The clock restarts for the next head: this one also takes 0.6 s.
        for part in (b"GET /flags/cn/cn.gif HT", b"TP/1.1\r\nHost: t\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.2)
        with sock.makefile("rb") as reader:
            assert read_response(reader).status == 200


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(
    start_server: ServerFactory, bound: str
) -> None:
    server = start_server("local", idle_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n")
        with sock.makefile("rb") as reader:
            assert read_response(reader).status == 200
            started = time.monotonic()
            assert reader.read(1) == b""  # closed by the server, not by us
        assert 0.4 < time.monotonic() - started < 2.5


class _ExhaustedSocket:
    """A listening socket whose accept() always fails with EMFILE."""

    def __init__(self, real: socket.socket) -> None:
        self._real = real
        self.accepts = 0

    def fileno(self) -> int:
        return self._real.fileno()

    def accept(self) -> Any:
        self.accepts += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self._real.close()


def test_accept_out_of_descriptors_backs_off_instead_of_spinning() -> None:
    from flags2.servers.options import ServerOptions

    server = FlagServer("local", ServerOptions(seed=1), port=0)
    fake = _ExhaustedSocket(server.socket)
    server.socket = fake  # type: ignore[assignment]
    serve_in_thread(server, poll_interval=0.05)
    # A pending connection keeps the listening socket readable throughout.
    client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        time.sleep(1.0)
        accepts = fake.accepts
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    # Spinning would be many thousands; the backoff doubles 10 ms up to 0.5 s.
    assert 1 <= accepts <= 12


def test_backoff_grows_and_resets() -> None:
    backoff = AcceptBackoff()
    sleeps: list[float] = []
    started = time.monotonic()
    for _ in range(3):
        before = time.monotonic()
        backoff.failed(OSError(errno.ENFILE, "file table full"))
        sleeps.append(time.monotonic() - before)
    backoff.failed(OSError(errno.ECONNABORTED, "aborted"))  # not exhaustion
    assert time.monotonic() - started < 0.5
    assert sleeps[0] < sleeps[2]
    backoff.succeeded()
    before = time.monotonic()
    backoff.failed(OSError(errno.EMFILE, "too many"))
    assert time.monotonic() - before < sleeps[2]


def test_stats_report_the_process_cpu_time(start_server: ServerFactory) -> None:
    import json

    server = start_server("local")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /_stats HTTP/1.1\r\nHost: t\r\n\r\n")
        with sock.makefile("rb") as reader:
            stats = json.loads(read_response(reader).body)
    assert isinstance(stats["cpu_seconds"], float)
    # Rounded to the millisecond, so it may be up to 0.5 ms ahead of ours.
    assert 0 < stats["cpu_seconds"] <= time.process_time() + 0.001


def test_connections_beyond_the_capacity_wait_their_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flags2.servers.limits
    import flags2.servers.server

    gate = flags2.servers.limits.ConnectionGate()
    monkeypatch.setattr(flags2.servers.server, "CONNECTIONS", gate)
    monkeypatch.setattr(flags2.servers.limits, "connection_capacity", lambda: 2)
    request = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n\r\n"
    with running("local") as server:
        first, second, third = (
            socket.create_connection(("127.0.0.1", server.port), timeout=5)
            for _ in range(3)
        )
        with first, second, third:
            for sock in (first, second, third):
                sock.sendall(request)
            for sock in (first, second):
                with sock.makefile("rb") as reader:
                    assert read_response(reader).status == 200
            assert gate.open == 2
            # The third waits in the listen backlog, not refused, not served.
            assert select.select([third], [], [], 0.5)[0] == []
            first.close()
            with third.makefile("rb") as reader:
                assert read_response(reader).status == 200
        deadline = time.monotonic() + 5
        while gate.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gate.open == 0  # every slot given back


def test_connections_are_capped_however_many_descriptors_there_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flags2.servers.limits

    monkeypatch.setattr(flags2.servers.limits, "connection_capacity", lambda: 10**6)
    gate = flags2.servers.limits.ConnectionGate(most=3)
    assert [gate.admit(0.01) for _ in range(4)] == [True, True, True, False]
    gate.release()
    assert gate.admit(0.01)
    most = flags2.servers.limits.MAX_CONNECTIONS
    default = flags2.servers.limits.ConnectionGate()
    assert sum(default.admit(0) for _ in range(most + 1)) == most


def test_a_client_that_stops_reading_is_dropped_quietly_within_the_bound(
    start_server: ServerFactory,
    bound: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # 16 MiB to a client that does not read: the server's send waits out the
    # idle timeout, then the connection is dropped with no line on stderr (a
    # client gone, not a bug) and no second wait for the unsent rest.
    (tmp_path / "flags").mkdir()
    (tmp_path / "big.bin").write_bytes(bytes(16 << 20))
    server = start_server("local", directory=tmp_path, idle_timeout=1.0)

    def in_flight() -> int:
        stats = json.loads(raw_request(server.port, STATS_PATH).body)
        return int(stats["in_flight"])

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        started = time.monotonic()
        while not in_flight():  # the server has begun to answer
            assert time.monotonic() - started < 5, "the request never arrived"
            time.sleep(0.01)
        while in_flight():
            assert time.monotonic() - started < 10, "the server is still sending"
            time.sleep(0.02)
        gave_up = time.monotonic()
        while CONNECTIONS.open:  # ours is closed, though we never read
            assert time.monotonic() - gave_up < 10, "the connection stays open"
            time.sleep(0.02)
        closed = time.monotonic()
    assert 0.9 < gave_up - started < 4
    assert closed - gave_up < 0.8  # not a second idle timeout for the rest
    assert "error serving" not in capfd.readouterr().err
