"""DELAY over TLS, HTTP/2 and HTTP/1.1: the bundled flags, the same seeded plan.

The optional extra ``flags2[tls]`` (hypercorn, trustme): an ASGI app on
hypercorn that serves ``/flags/xx/xx.gif`` as DELAY does, each GET after the
delay `flags2.servers.plan.planned` gives the DELAY kind for that path and
count, and ``/_stats`` with the peak in flight and the process's CPU, so
``flags2 bench --servers tls --http 1.1,2`` shows both protocols offline,
with an ideal. ALPN offers ``h2`` and ``http/1.1``; the client picks.

The certificate is a trustme CA's, made at start: the CA goes to the file
``--ca`` names, for the clients' ``SSL_CERT_FILE``. No faults: ERROR's
faults are written at the HTTP/1.1 connection, which hypercorn owns here.
Started by `background` (a child process, as `flags2.servers.launch` starts
the others; EOF on its stdin stops it)::

    with background(["--seed", "7"], ca_file) as url:
        ...  # SSL_CERT_FILE=ca_file flags2 download -s {url} --no-serve
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .launch import LaunchError
from .options import ServerOptions, data_dir
from .plan import new_seed, planned

__all__ = ["KIND", "LABEL", "available", "background", "main"]

KIND = "tls"
"""The ``--servers`` entry of the bench that starts this server."""
LABEL = "DELAY-TLS"
PLAN_KIND = "delay"
"""Whose delays it waits: a TLS row's ideal is DELAY's."""
_READY = "READY "
_STATS_PATH = "/_stats"
_START_TIMEOUT = 15.0
_GRACE = 3.0

_Send = Callable[[dict[str, Any]], Awaitable[None]]


def available() -> str | None:
    """None if hypercorn and trustme import; else the line that says how."""
    try:
        import hypercorn  # noqa: F401
        import trustme  # noqa: F401
    except ImportError:
        return "the TLS server needs hypercorn and trustme: pip install 'flags2[tls]'"
    return None


class _App:
    """The ASGI app: flags after their planned delay, and ``/_stats``."""

    def __init__(self, options: ServerOptions) -> None:
        assert options.seed is not None
        self.options, self.seed = options, options.seed
        self.flags = data_dir() / "flags"
        self.seen: dict[str, int] = {}
        self.in_flight = self.peak = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: _Send) -> None:
        if scope["type"] != "http":
            return  # lifespan: nothing to set up
        path = str(scope["path"])
        if path == _STATS_PATH:
            stats = {"server": LABEL.lower(), "seed": self.seed,
                     "peak_in_flight": self.peak, "in_flight": self.in_flight,
                     "cpu_seconds": time.process_time()}  # fmt: skip
            await _answer(send, 200, json.dumps(stats).encode(), b"application/json")
            return
        nth = self.seen.get(path, 0)  # one event loop: no lock needed
        self.seen[path] = nth + 1
        plan = planned(self.seed, PLAN_KIND, path, nth, self.options)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(plan.delay)
            body = self._flag(path)
        finally:
            self.in_flight -= 1
        if body is None:
            await _answer(send, 404, b"not found\n", b"text/plain")
        else:
            await _answer(send, 200, body, b"image/gif")

    def _flag(self, path: str) -> bytes | None:
        parts = path.split("/")  # "", "flags", "br", "br.gif"
        if len(parts) != 4 or parts[1] != "flags" or parts[3] != f"{parts[2]}.gif":
            return None
        if not parts[2].isalpha() or len(parts[2]) != 2:
            return None
        file = self.flags / parts[2] / parts[3]
        return file.read_bytes() if file.is_file() else None


async def _answer(send: _Send, status: int, body: bytes, kind: bytes) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flags2.servers.tls")
    parser.add_argument("--ca", type=Path, required=True, help="where to write the CA")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--min-delay", type=float, default=0.5)
    parser.add_argument("--max-delay", type=float, default=5.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stdin closes; the READY line gives the URL and the seed."""
    import trustme
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    args = _parser().parse_args(argv)
    # Ctrl-C reaches the whole process group: the parent decides, and stops
    # this server by closing its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = new_seed() if args.seed is None else args.seed
    options = ServerOptions(
        seed=seed, min_delay=args.min_delay, max_delay=args.max_delay
    )
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(args.ca))
    listener = socket.create_server(("127.0.0.1", args.port))
    port = int(listener.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="flags2-tls-") as folder:
        server_pem = Path(folder) / "server.pem"
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]  # hypercorn closes it
        config.certfile = config.keyfile = str(server_pem)
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = config.errorlog = None
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        def watch_stdin() -> None:
            sys.stdin.read()  # EOF: the parent is done or gone
            loop.call_soon_threadsafe(stop.set)

        url = f"https://localhost:{port}/flags"
        print(_READY + json.dumps({"url": url, "seed": seed}), flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        app: Any = _App(options)
        loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))
        loop.close()
    return 0


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            lines.put(line)
    lines.put(None)


@contextmanager
def background(args: Sequence[str], ca_file: Path) -> Iterator[str]:
    """Run the server in a child for the block; yield its base URL.

    `args` are ``--seed``, ``--min-delay``, ``--max-delay``; the CA is written
    to `ca_file`, the server's stderr beside it. Raises `LaunchError`, as
    `flags2.servers.launch.background` does, if it does not come up.
    """
    import flags2

    command = [sys.executable, "-P", "-m", __name__, "--ca", str(ca_file), *args]
    # The child imports this very flags2, even from an uninstalled checkout.
    root = str(Path(flags2.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    log = ca_file.with_suffix(".log")
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            text=True, env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        url = _wait_ready(proc, lines, log)
        yield url
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], log: Path
) -> str:
    deadline = time.monotonic() + _START_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:  # it exited: its last line of stderr says why
            proc.wait(timeout=_GRACE)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            tail = tail or [f"exit status {proc.returncode}"]
            raise LaunchError(f"the TLS server failed to start: {tail[0]}")
        if line.startswith(_READY):
            return str(json.loads(line[len(_READY) :])["url"])
    raise LaunchError(f"the TLS server did not start within {_START_TIMEOUT:g} s")


if __name__ == "__main__":  # pragma: no cover - run as a child
    sys.exit(main())
