"""What the tests share besides fixtures: real flags, served paths, types.

Fixtures stay in ``conftest.py``; test modules import these by name.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flags2.bench.child import die_with_parent
from flags2.servers.cli import SUPERVISED_FLAG
from flags2.settings import MODES as _MODES
from flags2.tracker import Tracker

__all__ = [
    "FLAGS_DIR",
    "MODES",
    "Answers",
    "DiesWithParent",
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


class DiesWithParent(subprocess.Popen[Any]):
    """`subprocess.Popen` whose child is SIGKILLed when the test process dies.

    conftest puts it in place of ``subprocess.Popen`` for the whole session, so
    every command a test starts (``subprocess.run`` and asyncio's subprocesses
    too) goes with a worker that pytest-timeout ends by ``os._exit``, or that
    anything SIGKILLs, instead of living on. Left alone: children that choose
    their own lifetime (a session or process group of their own, their own
    ``preexec_fn``: the bench's Spawner), the bundled servers that
    `flags2.servers.launch` supervises through their stdin (a shared one must
    outlive the run that started it while others lease it), and children
    started off the main thread, which the signal would follow when that
    thread ends (`flags2.bench.child`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        argv = args[0] if args else kwargs.get("args", ())
        own_lifetime = (
            len(args) > 6  # preexec_fn given by position
            or kwargs.get("preexec_fn") is not None
            or kwargs.get("start_new_session")
            or kwargs.get("process_group") is not None
            or (not isinstance(argv, str | bytes) and SUPERVISED_FLAG in argv)
        )
        if not own_lifetime and threading.current_thread() is threading.main_thread():
            kwargs["preexec_fn"] = die_with_parent(signal.SIGKILL)
        super().__init__(*args, **kwargs)
