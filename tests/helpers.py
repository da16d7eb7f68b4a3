"""What the tests share besides fixtures: real flags, served paths, types.

Fixtures stay in ``conftest.py``; test modules import these by name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flags2.portable import die_with_parent
from flags2.servers.cli import SUPERVISED_FLAG
from flags2.settings import MODES as _MODES
from flags2.tracker import Tracker

__all__ = [
    "ABSENT",
    "FLAGS_DIR",
    "FLAKY_FAULTS",
    "IN_PROCESS_MODES",
    "LINUX_ONLY",
    "MODES",
    "Answers",
    "DiesWithParent",
    "FakeDNS",
    "Flaky",
    "KeptAlive",
    "RunFn",
    "Script",
    "TLSServer",
    "accept_in_threads",
    "colour_pixels",
    "env_without_posix",
    "flag_bytes",
    "installed",
    "kernel_bound",
    "leftovers",
    "noise",
    "real_metadata",
    "requested",
    "serve_flags",
    "serve_metadata",
]

MODES = list(_MODES)
IN_PROCESS_MODES = [mode for mode in MODES if mode != "processpool"]
"""The modes whose requests run in the test's own process: a test that watches
them from inside (a patched function counting its calls) parametrizes
``mode`` over these, as a process pool's workers keep their own counts."""
FLAGS_DIR = Path(str(resources.files("flags2.servers") / "data" / "flags"))


def recorded_run(
    mode: str,
    base_url: str,
    dest: Path,
    json_path: Path,
    codes: list[str],
    **fields: Any,
) -> tuple[int, dict[str, Any]]:
    """A whole run (runner.run) of `codes`, with its --json record read back."""
    from flags2.runner import run
    from flags2.settings import Settings

    fields.setdefault("timeout", 5.0)
    settings = Settings(base_url=base_url, site="CUSTOM", dest=dest, **fields)
    code = run(mode, sorted(codes), settings, json_path=str(json_path), serve=False)
    return code, json.loads(json_path.read_text())


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
        self.resumed: dict[int, bool] = {}  # connection number: TLS session resumed
        self.sent = threading.Semaphore(0)  # released after each step is sent


FLAKY_FAULTS = ["reset", "truncate", "truncate-chunked", "silent", "stall"]
"""What the ``flaky`` server can do to a request (see that fixture)."""


class Flaky:
    """What a flaky server saw: its base URL and when each request for BR came."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self._lock = threading.Lock()

    def arrived(self) -> int:
        """Count a request arriving now; return its number, from 1."""
        with self._lock:
            self.arrivals.append(time.monotonic())
            return len(self.arrivals)

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def gaps(self) -> list[float]:
        """Seconds between each request and the one before it."""
        with self._lock:
            return [b - a for a, b in itertools.pairwise(self.arrivals)]


_NOISE = re.compile(r"Traceback|error serving|Exception|\w*Error\b")


def noise(text: str) -> list[str]:
    """The lines of `text` (a server's or a client's stderr) showing an error
    that escaped: a traceback, the servers' one-line ``error serving ...``, an
    exception's name (``BrokenPipeError: ...``, ``Exception ignored in ...``).

    >>> noise("servers stopped\\nerror serving 127.0.0.1: OSError: x\\n")
    ['error serving 127.0.0.1: OSError: x']
    """
    return [line for line in text.splitlines() if _NOISE.search(line)]


def colour_pixels(png: Path, colour: str) -> int:
    """How many pixels of the picture `png` have `colour` (``#rrggbb``)."""
    import numpy as np
    from matplotlib.image import imread

    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    image = imread(png)[..., :3]
    return int(np.all(np.abs(image - rgb) < 0.02, axis=-1).sum())


def installed(command: str) -> str:
    """The path of the installed `command`, beside the interpreter running the tests.

    pip puts a package's commands in the same folder as its ``python``
    (``bin/``, or ``Scripts/`` with ``flags2.exe`` on Windows), so they are
    found there even when that folder is not on PATH (the venv's python run
    by its path). A command missing there fails the test: a skip would hide
    that the commands were never tested.
    """
    folders = list(
        dict.fromkeys([str(Path(sys.executable).parent), sysconfig.get_path("scripts")])
    )
    found = shutil.which(command, path=os.pathsep.join(folders))
    if found is None:
        pytest.fail(
            f"{command} is not installed beside {sys.executable} (looked in"
            f" {', '.join(folders)}): run pip install -e . with this"
            " interpreter",
            pytrace=False,
        )
    return found


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


LINUX_ONLY = pytest.mark.skipif(
    sys.platform != "linux", reason="reads the bounds as Linux lays them out"
)
"""For a test that reads a socket's kernel bounds back (`kernel_bound`)."""


def kernel_bound(sock: socket.socket, option: int) -> tuple[int, int]:
    """A socket's SO_RCVTIMEO or SO_SNDTIMEO as Linux gives it: (seconds, us)."""
    whole, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return whole, micro


ABSENT = (
    "fcntl", "resource", "select.poll",
    "os.fchmod", "os.O_NOFOLLOW", "os.wait4", "os.getuid",
    "socket.SO_RCVTIMEO", "socket.SO_SNDTIMEO",
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

        # hypercorn imports h11 or h2 on its first connection, in its own
        # thread: a process-pool worker forked meanwhile (the suite's default)
        # would inherit that module's import lock held, and wait on it for
        # good when its clients import h11 (httpcore2) or h2. Imported first.
        import h2.connection  # noqa: F401
        import h11  # noqa: F401
        from hypercorn.config import Config

        self.plain_url = plain_url
        self.versions: set[str] = set()
        self.clients: set[object] = set()  # (address, port) of each connection
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
        self.clients.add(scope["client"])
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
    thread ends (`flags2.portable.die_with_parent`).
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


def accept_in_threads(
    listener: socket.socket, serve: Callable[[socket.socket], None]
) -> None:
    """Serve each connection `listener` accepts in a thread of its own."""

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
