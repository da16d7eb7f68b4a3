"""Shared fixtures: real servers on loopback, and settings pointing at them.

The plain functions and types the tests share are in :mod:`tests.helpers`.

pytest-httpserver is made threaded (concurrent modes need a server that
answers concurrently) and answers unmatched paths with 404, as a static
server would, instead of its default 500.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flags2.runner import load_mode
from flags2.settings import Settings
from flags2.tracker import Tracker
from tests.helpers import MODES, Answers, DiesWithParent, KeptAlive, RunFn, Script

# A suite started as a background job (``pytest &`` in a script) inherits an
# ignored SIGINT, and so would every command it starts: flags2 rightly keeps
# an inherited ignore, and the Ctrl-C tests would see nothing. A handler here
# (any but SIG_IGN) means children start with the default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
            "concurrency": min(module.MAX_CONCUR_REQ, 10),
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

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
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
def kept_alive() -> Iterator[Callable[[Answers], KeptAlive]]:
    """A server that keeps connections open and answers the n-th request it
    gets (over all connections) with the n-th list of (pause, bytes) steps.

    For what happens after a complete answer: junk or a second answer on the
    same connection, a close while idle. It never closes a connection itself
    unless a step is ``b""`` (then it closes right there).
    """
    listeners: list[socket.socket] = []
    done = threading.Event()

    def start(answers: Answers) -> KeptAlive:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        seen = KeptAlive(f"http://127.0.0.1:{listener.getsockname()[1]}/flags")
        lock = threading.Lock()

        def serve(conn: socket.socket, number: int) -> None:
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
