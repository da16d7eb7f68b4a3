"""Run bundled servers in a child process for the duration of a ``with`` block.

The servers run in their own process, so they never compete with the client for
its GIL, and the child is always stopped when the block ends (normally, by an
exception or by Ctrl-C); if the parent dies anyway, the child sees EOF on its
stdin and exits by itself. Used by ``flags2 download`` (the embedded default)
and ``flags2 bench``::

    from servers.launch import background, is_listening

    if not is_listening("127.0.0.1", 8001):
        with background(["delay"], port=8001, args=["--seed", "7"]) as running:
            print(running.urls["delay"], running.seed)  # http://127.0.0.1:8001/flags 7
            ...  # download from it
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from servers.cli import READY_PREFIX, SUPERVISED_FLAG
from servers.options import SERVER_KINDS

__all__ = ["LaunchError", "Launched", "background", "is_listening"]

_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


class LaunchError(RuntimeError):
    """The server process did not come up; the message says why, in one line."""


@dataclass(frozen=True)
class Launched:
    """What `background` yields: where the servers listen and how they are seeded."""

    urls: dict[str, str]
    """Base URL by kind, e.g. ``{"delay": "http://127.0.0.1:8001/flags"}``."""
    ports: dict[str, int]
    """Bound port by kind."""
    seed: int
    """The seed the servers use (the one passed in `args`, or the one they drew)."""
    pid: int
    """Process id of the child running the servers."""


def is_listening(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return True if something accepts TCP connections on (host, port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass  # the stream was closed under us: the child is gone either way
    lines.put(None)


class _StderrRelay:
    """Collect the child's stderr until it is ready, then pass it through."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._ready = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream: IO[str]) -> None:
        # Draining in a thread matters: with --log a child writes a line per
        # request, and a full pipe would block its handler threads.
        try:
            for line in stream:
                self._handle(line)
        except (OSError, ValueError):
            pass

    def _handle(self, line: str) -> None:
        with self._lock:
            if not self._ready:
                self.lines.append(line)
                return
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def pass_through(self) -> None:
        with self._lock:
            self._ready = True
            pending, self.lines = self.lines, []
        for line in pending:
            sys.stderr.write(line)

    def last_line(self) -> str:
        self.thread.join(timeout=1)
        with self._lock:
            text = [line.strip() for line in self.lines if line.strip()]
        return text[-1] if text else ""


def _wait_ready(
    proc: subprocess.Popen[str],
    lines: queue.Queue[str | None],
    relay: _StderrRelay,
    timeout: float,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchError(f"servers did not report ready within {timeout:g} s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            try:
                code = proc.wait(timeout=_GRACE)
            except subprocess.TimeoutExpired:
                code = None
            reason = relay.last_line() or f"exit status {code}"
            raise LaunchError(f"servers failed to start: {reason}")
        if line.startswith(READY_PREFIX):
            info: dict[str, object] = json.loads(line[len(READY_PREFIX) :])
            return info


def _stop(proc: subprocess.Popen[str], readers: Sequence[threading.Thread]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # EOF alone makes a supervised child stop
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Once the child is gone its pipes hit EOF; let the readers see it before
    # closing the pipes under them.
    for reader in readers:
        reader.join(timeout=1)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def background(
    kinds: Sequence[str],
    *,
    port: int = 0,
    args: Sequence[str] = (),
    timeout: float = 15.0,
) -> Iterator[Launched]:
    """Start ``python -m servers KINDS --port PORT ARGS`` and yield when it listens.

    `port` 0 gives each server its own free port; another value is the first of
    consecutive ports (LOCAL, DELAY, ERROR order). `args` are more command-line
    options (``--seed 7``, ``--max-delay 2``, ``--log``...). Raises `LaunchError`
    if the servers are not listening within `timeout` seconds (a port in use,
    a bad option); the child is stopped when the block exits, whatever the cause.
    """
    for kind in kinds:
        if kind not in SERVER_KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
    command = [
        sys.executable,
        "-P",  # no cwd on sys.path: a local folder named `servers` cannot shadow us
        "-m",
        "servers",
        *kinds,
        "--port",
        str(port),
        *args,
        SUPERVISED_FLAG,
    ]
    # The child must import this very package (even from an uninstalled
    # checkout), and unbuffered, so the READY line does not sit in a buffer.
    package_root = str(Path(__file__).resolve().parent.parent)
    python_path = os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])
    )
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    readers: list[threading.Thread] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        relay = _StderrRelay(proc.stderr)
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(
            target=_pump_lines, args=(proc.stdout, lines), daemon=True
        )
        pump.start()
        readers += [pump, relay.thread]
        info = _wait_ready(proc, lines, relay, timeout)
        relay.pass_through()
        urls = info["urls"]
        ports = info["ports"]
        seed = info["seed"]
        assert (
            isinstance(urls, dict) and isinstance(ports, dict) and isinstance(seed, int)
        )
        yield Launched(
            urls={str(k): str(v) for k, v in urls.items()},
            ports={str(k): int(v) for k, v in ports.items()},
            seed=seed,
            pid=proc.pid,
        )
    finally:
        _stop(proc, readers)
