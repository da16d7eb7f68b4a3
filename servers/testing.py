"""Helpers for tests that talk to a bundled server: in-thread servers, raw HTTP.

`running` starts a server on a free loopback port inside the current process,
the quickest way to test a client against LOCAL, DELAY or ERROR::

    from .testing import running

    with running("error", error_rate=1.0, max_delay=0.01) as server:
        httpx.get(server.base_url + "/br/br.gif").status_code  # 418

`raw_request` sends bytes exactly as written, for what a client library would
normalise away (``..`` in paths, methods other than GET).
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from .options import ServerOptions
from .server import FlagServer, serve_in_thread

__all__ = ["RawResponse", "ServerFactory", "raw_request", "read_response", "running"]

ServerFactory = Callable[..., FlagServer]
"""Type of a function taking a kind and `ServerOptions` fields, returning a server."""


@contextmanager
def running(
    kind: str = "local", *, log_stream: TextIO | None = None, **overrides: Any
) -> Iterator[FlagServer]:
    """Serve `kind` on a free 127.0.0.1 port in a thread for the ``with`` block.

    `overrides` are `ServerOptions` fields; unlike the command line, the defaults
    here are made for tests: seed 1 and delays of at most 20 ms.
    """
    settings: dict[str, Any] = {"seed": 1, "min_delay": 0.0, "max_delay": 0.02}
    settings.update(overrides)
    server = FlagServer(kind, ServerOptions(**settings), port=0, log_stream=log_stream)
    serve_in_thread(server, poll_interval=0.05)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RawResponse:
    """A response parsed off the wire."""

    status: int
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes


def read_response(reader: io.BufferedIOBase) -> RawResponse:
    """Read one response framed by Content-Length (or by close, if none)."""
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("closed before the status line")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    else:
        body = reader.read()
    return RawResponse(status, headers, body)


def raw_request(
    port: int, target: str, method: str = "GET", *, host: str = "127.0.0.1"
) -> RawResponse:
    """Send one request with the target exactly as given; read the response."""
    with socket.create_connection((host, port), timeout=5) as sock:
        request = f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        with sock.makefile("rb") as reader:
            return read_response(reader)
