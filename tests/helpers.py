"""What the tests share besides fixtures: real flags, served paths, types.

Fixtures stay in ``conftest.py``; test modules import these by name.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flags2.settings import MODES as _MODES
from flags2.tracker import Tracker

__all__ = [
    "FLAGS_DIR",
    "MODES",
    "Answers",
    "KeptAlive",
    "RunFn",
    "Script",
    "TLSServer",
    "colour_pixels",
    "flag_bytes",
    "installed",
    "leftovers",
    "real_metadata",
    "requested",
    "serve_flags",
    "serve_metadata",
]

MODES = list(_MODES)
FLAGS_DIR = Path(str(resources.files("flags2.servers") / "data" / "flags"))


def flag_bytes(cc: str) -> bytes:
    cc = cc.lower()
    return (FLAGS_DIR / cc / f"{cc}.gif").read_bytes()


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


RunFn = Callable[..., Tracker]


def leftovers(folder: Path) -> list[str]:
    """Files in `folder` that are not a finished flag (temporaries, say)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".gif"))


Script = Callable[[list[tuple[float, bytes]]], str]
"""Starts a scripted server from its (pause, bytes) steps; returns its base URL."""


Answers = list[list[tuple[float, bytes]]]


class KeptAlive:
    """What a keep-alive scripted server saw: its base URL and connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[tuple[int, bytes]] = []  # (connection number, target)
        self.connections = 0
        self.sent = threading.Semaphore(0)  # released after each step is sent


def colour_pixels(png: Path, colour: str) -> int:
    """How many pixels of the picture `png` have `colour` (``#rrggbb``)."""
    import numpy as np
    from matplotlib.image import imread

    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    image = imread(png)[..., :3]
    return int(np.all(np.abs(image - rgb) < 0.02, axis=-1).sum())


def installed(command: str) -> str:
    """The path of the installed `command`; the test skips if it is not on PATH."""
    executable = shutil.which(command)
    if executable is None:
        pytest.skip(f"{command} is not on PATH (pip install -e . installs it)")
    return executable


class TLSServer:
    """hypercorn over TLS on a loopback port, in a thread: HTTP/2 and HTTP/1.1.

    Serves the bundled flags at ``/flags/cc/cc.gif`` (each answer after a
    short wait, so concurrent streams overlap), ``/moved/...`` as a 301 to
    the same path under ``/flags``, and ``/down/...`` as a 301 to
    `plain_url` (a plain-http base). `protocols` is what ALPN offers;
    `max_streams` is the HTTP/2 cap on concurrent streams.
    """

    def __init__(
        self,
        certfile: str,
        *,
        protocols: tuple[str, ...] = ("h2", "http/1.1"),
        max_streams: int = 100,
        plain_url: str = "http://127.0.0.1:9/flags",
    ) -> None:
        import asyncio
        import socket

        from hypercorn.config import Config

        self.plain_url = plain_url
        self.versions: set[str] = set()
        self.in_flight = self.peak = 0
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        self.url = f"https://localhost:{self.port}"
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]  # hypercorn closes it
        config.certfile = config.keyfile = certfile
        config.alpn_protocols = list(protocols)
        config.h2_max_concurrent_streams = max_streams
        config.accesslog = config.errorlog = None
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        from hypercorn.asyncio import serve

        self._loop.run_until_complete(
            serve(self._app, self._config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )

    async def _app(
        self, scope: dict[str, object], receive: object, send: object
    ) -> None:
        import asyncio

        if scope["type"] != "http":
            return
        self.versions.add(str(scope["http_version"]))
        path = str(scope["path"])
        status, headers, body = 404, [], b""
        if path.startswith("/moved/"):
            status, headers = 301, [(b"location", f"/flags/{path[7:]}".encode())]
        elif path.startswith("/down/"):
            location = f"{self.plain_url}/{path[6:]}"
            status, headers = 301, [(b"location", location.encode())]
        elif path.startswith("/flags/") and path.count("/") == 3:
            cc = path.split("/")[2].upper()
            file = FLAGS_DIR / cc.lower() / f"{cc.lower()}.gif"
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            await asyncio.sleep(0.005)
            self.in_flight -= 1
            if file.is_file():
                status, body = 200, file.read_bytes()
                headers = [(b"content-type", b"image/gif")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]
