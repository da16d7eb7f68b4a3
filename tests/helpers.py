"""What the tests share besides fixtures: real flags, served paths, types.

Fixtures stay in ``conftest.py``; test modules import these by name.
"""

from __future__ import annotations

import json
import os
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
    "ABSENT",
    "FLAGS_DIR",
    "MODES",
    "Answers",
    "KeptAlive",
    "RunFn",
    "Script",
    "colour_pixels",
    "env_without_posix",
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


ABSENT = (
    "fcntl", "resource", "select.poll",
    "os.fchmod", "os.O_NOFOLLOW", "os.wait4", "os.getuid",
)  # fmt: skip
"""The POSIX-only modules and attributes flags2 must run without (issue 17)."""

_WITHOUT_POSIX = f"""\
# Hides {", ".join(ABSENT)} before anything imports them,
# as a Python without them (Windows) would have it.
import importlib, sys
for name in {ABSENT!r}:
    module, _, attribute = name.partition(".")
    if not attribute:
        sys.modules[module] = None  # import fails with ImportError
    elif hasattr(mod := importlib.import_module(module), attribute):
        delattr(mod, attribute)
"""


def env_without_posix(folder: Path) -> dict[str, str]:
    """An environment whose Pythons start with every name of `ABSENT` hidden.

    A ``sitecustomize`` in `folder` does the hiding, and PYTHONPATH reaches
    every child flags2 starts (bundled servers, bench runs). LOCALAPPDATA is
    set in `folder` too: without ``os.getuid`` the lease folder is placed as
    on Windows.
    """
    site = folder / "without-posix"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_WITHOUT_POSIX)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    appdata = folder / "appdata"
    return {**os.environ, "PYTHONPATH": path, "LOCALAPPDATA": str(appdata)}
