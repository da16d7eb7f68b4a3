"""Shared fixtures: real servers on loopback, and settings pointing at them.

pytest-httpserver is made threaded (concurrent modes need a server that
answers concurrently) and answers unmatched paths with 404, as a static
server would, instead of its default 500.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flags2.runner import load_mode
from flags2.settings import MODES as _MODES
from flags2.settings import Settings
from flags2.tracker import Tracker

MODES = list(_MODES)
FLAGS_DIR = Path(str(resources.files("flags2.servers") / "data" / "flags"))


def flag_bytes(cc: str) -> bytes:
    cc = cc.lower()
    return (FLAGS_DIR / cc / f"{cc}.gif").read_bytes()


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


def serve_flags(httpserver: HTTPServer, codes: list[str]) -> None:
    """Serve the real GIFs of `codes`; every other path answers 404."""
    for cc in codes:
        httpserver.expect_request(
            f"/flags/{cc.lower()}/{cc.lower()}.gif"
        ).respond_with_data(flag_bytes(cc), content_type="image/gif")


def serve_metadata(httpserver: HTTPServer, countries: dict[str, bytes | str]) -> None:
    """Serve each code's ``metadata.json``: a country name, or raw bytes."""
    for cc, country in countries.items():
        body = (
            country
            if isinstance(country, bytes)
            else json.dumps({"iso_cc": cc.upper(), "country": country}).encode()
        )
        httpserver.expect_request(
            f"/flags/{cc.lower()}/metadata.json"
        ).respond_with_data(body, content_type="application/json")


def real_metadata(cc: str) -> bytes:
    cc = cc.lower()
    return (FLAGS_DIR / cc / "metadata.json").read_bytes()


def requested(httpserver: HTTPServer) -> list[str]:
    """The paths the server was asked for, in order."""
    return [request.path for request, _ in httpserver.log]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "downloaded"
    folder.mkdir()
    return folder


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


RunFn = Callable[..., Tracker]


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


def leftovers(folder: Path) -> list[str]:
    """Files in `folder` that are not a finished flag (temporaries, say)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".gif"))


Script = Callable[[list[tuple[float, bytes]]], str]
"""Starts a scripted server from its (pause, bytes) steps; returns its base URL."""


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


Answers = list[list[tuple[float, bytes]]]


class KeptAlive:
    """What a keep-alive scripted server saw: its base URL and connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[tuple[int, bytes]] = []  # (connection number, target)
        self.connections = 0


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


def colour_pixels(png: Path, colour: str) -> int:
    """How many pixels of the picture `png` have `colour` (``#rrggbb``)."""
    import numpy as np
    from matplotlib.image import imread

    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    image = imread(png)[..., :3]
    return int(np.all(np.abs(image - rgb) < 0.02, axis=-1).sum())
