"""Run bundled servers in a child process for the duration of a ``with`` block.

The servers run in their own process, so they never compete with the client for
its GIL. `background` gives a private server, always stopped when the block
ends (normally, by an exception or by Ctrl-C); if the parent dies anyway, the
child sees EOF on its stdin and exits by itself. ``flags2 bench`` uses it::

    from .launch import background

    with background(["delay"], port=0, args=["--seed", "7"]) as running:
        print(running.urls["delay"], running.seed)  # http://127.0.0.1:43211/flags 7
        ...  # download from it

`shared` is what ``flags2 download`` uses: it joins the server already
listening on a port, or starts one that stays up as long as any run that uses
it, the one that started it or another (`flags2.servers.lease`)::

    with shared("delay", port=8001) as started:
        ...  # download from port 8001; `started` is None if it was running
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

from flags2 import portable

from .cli import (
    DETACHED_LINE,
    LEASE_OPTION,
    READY_PREFIX,
    STOPPING_LINE,
    SUPERVISED_FLAG,
)
from .lease import AVAILABLE, Lease, lease_path
from .options import SERVER_KINDS

__all__ = ["LaunchError", "Launched", "background", "is_listening", "shared"]

_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
# How long a run waits for a lease: only a server that is stopping holds it
# exclusively, and stopping takes a fraction of a second.
_LEASE_WAIT = 10.0
# Children left serving other runs; kept so they are reaped (and not reported
# as "still running" by their Popen) once they exit.
_detached: list[subprocess.Popen[str]] = []


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


def _left_serving(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], lease: Lease
) -> bool:
    # Let go of our lease, then say we are gone (stdin EOF); the child answers
    # whether it stops or serves on for other runs holding the lease.
    lease.release()
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    deadline = time.monotonic() + _GRACE
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None or line.strip() == STOPPING_LINE:
            break
        if line.strip() == DETACHED_LINE:
            _detached.append(proc)
            return True
    return False


def _stop(
    proc: subprocess.Popen[str],
    readers: Sequence[threading.Thread],
    lines: queue.Queue[str | None],
    lease: Lease | None,
) -> None:
    if lease is not None and _left_serving(proc, lines, lease):
        # The child has let go of both pipes; the readers end at their EOF.
        for reader in readers:
            reader.join(timeout=1)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # EOF alone makes a supervised child stop
    if lease is not None:
        # It said it stops: give it the time to shut its servers down.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_GRACE)
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
    """Start ``python -m flags2.servers KINDS --port PORT ARGS``; yield when it listens.

    `port` 0 gives each server its own free port; another value is the first of
    consecutive ports (LOCAL, DELAY, ERROR order). `args` are more command-line
    options (``--seed 7``, ``--max-delay 2``, ``--log``...). Raises `LaunchError`
    if the servers are not listening within `timeout` seconds (a port in use,
    a bad option); the child is stopped when the block exits, whatever the cause.
    The server is private: nothing else keeps it alive.
    """
    with _launch(kinds, port=port, args=args, timeout=timeout, lease=None) as running:
        yield running


@contextmanager
def shared(
    kind: str, *, port: int, host: str = "127.0.0.1", timeout: float = 15.0
) -> Iterator[Launched | None]:
    """Use the `kind` server on `port` for the ``with`` block, starting it if need be.

    Yields None when something already listens there, else the server started
    (as `background` would). Either way this block holds the port's lease, so a
    bundled server another run started stays up until the block ends, and the
    one started here serves on after it for as long as other runs hold the
    lease, then stops. Raises `LaunchError` as `background` does, unless the
    port was taken by a server that another run started at the same moment.
    """
    lease = Lease(lease_path(port))
    if AVAILABLE:
        lease.share(_LEASE_WAIT)  # without it, the run just cannot lengthen a life
    try:
        if is_listening(host, port):
            yield None
            return
        with contextlib.ExitStack() as stack:
            running: Launched | None = None
            try:
                running = stack.enter_context(
                    _launch(
                        [kind],
                        port=port,
                        args=(),
                        timeout=timeout,
                        lease=lease,
                        detach=True,
                    )
                )
            except LaunchError:
                if not is_listening(host, port):
                    raise
                # Another run won the race to start it: share its server.
            yield running
    finally:
        lease.release()


@contextmanager
def _launch(
    kinds: Sequence[str],
    *,
    port: int,
    args: Sequence[str],
    timeout: float,
    lease: Lease | None,
    detach: bool = False,
) -> Iterator[Launched]:
    lease = lease if lease is not None and lease.held else None
    for kind in kinds:
        if kind not in SERVER_KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
    command = [
        sys.executable,
        "-P",  # no cwd on sys.path: a local folder of the same name cannot shadow us
        "-m",
        __package__,  # flags2.servers; servers when run from a checkout's folder
        *kinds,
        "--port",
        str(port),
        *args,
        SUPERVISED_FLAG,
        *([LEASE_OPTION, str(lease.path)] if lease is not None else []),
    ]
    # The child must import this very package and flags2 (even from an
    # uninstalled checkout), and unbuffered, so the READY line does not sit in
    # a buffer. Installed or editable, flags2's folder is enough (the install
    # maps servers/ to flags2.servers); run as `servers` from a checkout, that
    # checkout's folder is the one both live in.
    roots = [Path(os.path.abspath(portable.__file__)).parents[1]]
    if __package__ == "servers":
        roots.append(Path(os.path.abspath(__file__)).parents[1])
    python_path = os.pathsep.join(
        dict.fromkeys([*map(str, roots), *filter(None, [os.environ.get("PYTHONPATH")])])
    )
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shared server belongs to no run's process group or terminal: a
        # signal to the starter's group (SIGHUP from a closed terminal, SIGTERM
        # from timeout or a service manager) must not reach it.
        **(portable.detached() if detach else {}),
    )
    readers: list[threading.Thread] = []
    lines: queue.Queue[str | None] = queue.Queue()
    leased: Lease | None = None
    _reap_detached()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        relay = _StderrRelay(proc.stderr)
        pump = threading.Thread(
            target=_pump_lines, args=(proc.stdout, lines), daemon=True
        )
        pump.start()
        readers += [pump, relay.thread]
        info = _wait_ready(proc, lines, relay, timeout)
        # Only a child that came up can serve other runs; one that failed is
        # just stopped, and the caller's lease stays the caller's.
        leased = lease
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
        _stop(proc, readers, lines, leased)


def _reap_detached() -> None:
    # A child that served other runs and has since exited is reaped here.
    _detached[:] = [proc for proc in _detached if proc.poll() is None]
