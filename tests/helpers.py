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
    "FakeDNS",
    "KeptAlive",
    "RunFn",
    "Script",
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


class FakeDNS:
    """The names a patched ``socket.getaddrinfo`` answers, and the names it was asked.

    ``names`` maps a host name to the loopback addresses it resolves to (the
    port asked is kept when an address gives none); ``delays`` holds a name's
    lookup that long (seconds), until the test ends. Every name that is not an
    IP address is recorded in ``asked``, whoever asks (the lean transports,
    asyncio's executor, httpx's own transports).
    """

    def __init__(self) -> None:
        self.names: dict[str, list[tuple[str, int | None]]] = {}
        self.delays: dict[str, float] = {}
        self.asked: list[str] = []
        self.ended = threading.Event()
