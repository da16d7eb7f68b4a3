"""Request handling: static files, the seeded delay, injected faults, ``/_stats``.

`FlagRequestHandler` serves the flags folder over the hardened connection of
`flags2.servers.connection.HardenedRequestHandler` (keep-alive, GET and HEAD
only, bounded heads, no traceback), with an exact ``Content-Length`` on every
response and no way out of the served folder. Each GET (404s and listings too,
as in the book) first waits the delay `flags2.servers.plan.planned` gives for
it; on ERROR some GETs then get a fault instead of their answer:

=============  ===========================================================
teapot         ``418 I'm a Teapot`` (the book's fault)
unavailable    ``503 Service Unavailable`` with ``Retry-After: 1``
reset          TCP reset before any byte of the response
truncate       the normal headers (full ``Content-Length``), half the body,
               then the connection is closed
stall          the normal headers, then no body for ``stall`` seconds, then
               the connection is closed
html           ``200`` with ``Content-Type: text/html`` and an HTML page
=============  ===========================================================

HEAD is never delayed nor faulted, so a client can probe a server cheaply.

Nothing a client sends raises out of a request: a target whose %-escapes do not
decode as UTF-8 (``/%ff``, overlong ``%c0%ae``) is a ``400`` on a connection
that stays open, and a bug left anyway is a ``500`` and one line on stderr,
never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import struct
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .connection import HardenedRequestHandler
from .plan import Planned, planned

if TYPE_CHECKING:
    from .server import FlagServer

__all__ = ["STATS_PATH", "FlagRequestHandler"]

STATS_PATH = "/_stats"
"""Path of the JSON counters; never delayed, faulted nor counted."""

_CHUNK = 64 * 1024
_FLAG_GIF = re.compile(r"/flags/([a-z]{2})/\1\.gif")

_HTML_PAGE = b"""\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Welcome to the network</title></head>
<body>
<h1>Please sign in</h1>
<p>This network requires you to accept the terms of use before you can
browse. (Injected by the flags2 ERROR server: an HTML page where a GIF was
expected, as a captive portal or a misconfigured proxy would send.)</p>
</body>
</html>
"""


def _path_of(target: str) -> str:
    # Split exactly as SimpleHTTPRequestHandler.translate_path does (not with
    # urlsplit, which would read `//x/y` as a host), so the plan, the log and the
    # containment check all see the path the file is looked up by.
    return target.split("?", 1)[0].split("#", 1)[0]


def _decodes(path: str) -> bool:
    # The base class decodes with errors="surrogatepass" and then fails on the
    # result (bad or overlong UTF-8, encoded surrogates): refuse such a target
    # before anything looks at it.
    try:
        unquote(path, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def _no_link_below(root: str, path: str) -> bool:
    """True if `path`, under the real path `root`, has no symbolic link below it.

    Then `path` is its own real path, inside `root`, as ``os.path.realpath``
    would say at the cost of a system call for every component from ``/``,
    each a turn of the GIL among hundreds of handler threads at ``-m 1000``.
    False (ask realpath) for a link, or for anything this walk cannot tell.
    """
    if not path.startswith(root + os.sep):
        return False
    at = root
    for part in path[len(root) + 1 :].split(os.sep):
        if not part:
            continue
        at = os.path.join(at, part)
        try:
            mode = os.lstat(at).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return True  # nothing further exists: no link can lead out
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return True


def _label(path: str) -> str:
    # The book logs flags by country code; anything else by its path.
    match = _FLAG_GIF.fullmatch(path)
    return match.group(1).upper() if match else path


class FlagRequestHandler(HardenedRequestHandler):
    """Handle one connection for a `flags2.servers.server.FlagServer`.

    The server is reached through ``self.server``; everything configurable comes
    from its frozen `flags2.servers.options.ServerOptions`.
    """

    server_version = "flags2-servers/0.1"
    # What the served files are, as mimetypes says, without its first call
    # reading the system's tables (tens of ms, in a fresh server's first burst);
    # other suffixes still go to mimetypes.
    extensions_map = {  # noqa: RUF012 - the base class's own mutable map
        **HardenedRequestHandler.extensions_map,
        ".gif": "image/gif",
        ".json": "application/json",
        ".md": "text/markdown",
        ".html": "text/html",
        ".txt": "text/plain",
    }

    def __init__(self, request: Any, client_address: Any, server: FlagServer) -> None:
        self._root = server.root
        super().__init__(request, client_address, server, directory=server.root)

    # -- GET and HEAD ---------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        self._in_method = True
        path = _path_of(self.path)
        if path == STATS_PATH:
            self._counted = False
            self._send_stats(head=head)
            return
        server = self.server
        plan = Planned(0.0, None)
        if not _decodes(path):
            self._send_error_page(
                HTTPStatus.BAD_REQUEST,
                explain="A %-escape in the request target is not valid UTF-8.",
            )
            if server.options.log:
                server.write_log(f"{path} {self.command} {self._status}")
            return
        if not head:
            nth = server.next_nth(path)
            plan = planned(server.seed, server.kind, path, nth, server.options)
        server.stats.begin()
        try:
            if plan.delay > 0:
                # Sleeping in this connection's own thread keeps other requests
                # flowing; the threads are daemons, so Ctrl-C is not held up.
                time.sleep(plan.delay)
            if plan.fault is None:
                self._send_normal(head=head)
            else:
                server.stats.count_fault(plan.fault)
                self._inject(plan.fault)
        finally:
            server.stats.end()
            if server.options.log:
                self._log_line(path, plan, head=head)

    def _send_normal(self, *, head: bool) -> None:
        f = self.send_head()
        if f is None:
            return
        try:
            if not head:
                self.copyfile(f, self.wfile)
        finally:
            f.close()

    def send_head(self) -> Any:
        """Like the base class, but 404 for anything that could leave the root."""
        if not self._inside_root():
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def _inside_root(self) -> bool:
        decoded = unquote(_path_of(self.path), errors="surrogatepass")
        # translate_path silently drops `..`; refusing outright is clearer to a
        # client probing traversal, and a NUL would make open() raise ValueError.
        if "\0" in decoded or ".." in decoded.replace("\\", "/").split("/"):
            return False
        target = self.translate_path(self.path)
        if os.name == "posix" and _no_link_below(self._root, target):
            return True  # the root is a real path, and nothing below it a link
        target = os.path.realpath(target)
        # realpath follows symlinks, so a link to /etc lands outside the root.
        return target == self._root or target.startswith(self._root + os.sep)

    # -- faults ---------------------------------------------------------------

    def _inject(self, fault: str) -> None:
        if fault == "teapot":
            self.send_error(HTTPStatus.IM_A_TEAPOT, "I'm a Teapot")
        elif fault == "unavailable":
            self._send_error_page(
                HTTPStatus.SERVICE_UNAVAILABLE, headers=(("Retry-After", "1"),)
            )
        elif fault == "html":
            self._send_bytes(HTTPStatus.OK, "text/html; charset=utf-8", _HTML_PAGE)
        elif fault == "reset":
            self._reset()
        elif fault in ("truncate", "stall"):
            self.close_connection = True
            self._send_cut(half=fault == "truncate")
            if fault == "stall":
                self.wfile.flush()  # the headers now, then nothing
                time.sleep(self.server.options.stall)
        else:  # pragma: no cover - ServerOptions rejects unknown kinds
            raise ValueError(f"unknown fault {fault!r}")

    def _send_cut(self, *, half: bool) -> None:
        """Send the normal headers (full length), then half the body or none.

        Only the headers go through memory; a file's body is copied in chunks,
        so a big file in the served folder costs no more than a flag.
        """
        real, buffer = self.wfile, io.BytesIO()
        self.wfile = buffer
        try:
            f = self.send_head()
        finally:
            self.wfile = real
        rendered = buffer.getvalue()
        if f is None:  # an error page, a small one: it is rendered whole
            head, sep, body = rendered.partition(b"\r\n\r\n")
            self.wfile.write(head + sep + (body[: len(body) // 2] if half else b""))
            return
        with f:
            self.wfile.write(rendered)
            left = f.seek(0, os.SEEK_END) // 2 if half else 0
            f.seek(0)
            while left > 0 and (chunk := f.read(min(left, _CHUNK))):
                self.wfile.write(chunk)
                left -= len(chunk)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close_connection = True
        self._status = "reset"
        self.server.stats.count_response("reset")
        # The socket only really closes once its makefile() reader is closed.
        self.rfile.close()
        self.connection.close()

    # -- responses ------------------------------------------------------------

    def _send_bytes(
        self,
        status: int,
        content_type: str,
        body: bytes,
        *,
        head: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_stats(self, *, head: bool) -> None:
        server = self.server
        data = {
            "server": server.kind,
            "seed": server.seed,
            **server.stats.snapshot(),
            # CPU time of the whole server process (every server it runs).
            "cpu_seconds": round(time.process_time(), 3),
        }
        body = json.dumps(data).encode() + b"\n"
        self._send_bytes(
            HTTPStatus.OK,
            "application/json",
            body,
            head=head,
            headers=(("Cache-Control", "no-store"),),
        )

    def _log_line(self, path: str, plan: Planned, *, head: bool) -> None:
        label = _label(path)
        if head:
            line = f"{label} HEAD {self._status}"
        else:
            line = f"{label} delay: {plan.delay:.2f}s {self._status}"
            if plan.fault is not None and plan.fault != "reset":
                line += f" {plan.fault}"
        self.server.write_log(line)
