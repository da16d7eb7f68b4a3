"""The HTTP/1.1 connection under every bundled server, hardened for load tests.

`HardenedRequestHandler` is `http.server.SimpleHTTPRequestHandler` with what a
load-test server needs from the protocol, whatever it serves:

* HTTP/1.1 keep-alive, errors included (the base class closes after every
  error: 482 reconnections in a run over AA..ZZ); only an error in the request
  itself, where the stream may be out of step, closes the connection, and then
  after reading what the client still sends, so a reset does not destroy the
  answer;
* only GET and HEAD (405 with ``Allow``; unknown methods 501);
* a head read whole and bounded before it is parsed, within the idle timeout of
  its first byte, and a GET's body discarded or refused
  (`flags2.servers.head`, `flags2.servers.limits.HeadReader`);
* no traceback when a client hangs up, and a bug left anyway a ``500``.

`flags2.servers.handler.FlagRequestHandler` builds the flags servers on it.
"""

from __future__ import annotations

import contextlib
import errno
import html
import io
import socket
import sys
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .head import Refused, body_length, discard, read_head
from .limits import BoundedWriter, HeadReader

if TYPE_CHECKING:
    from .server import FlagServer

__all__ = ["HardenedRequestHandler"]

_ALLOWED = "GET, HEAD"
# How long, and for how many bytes, a connection closed after an error answer
# keeps reading what the client still sends (see HardenedRequestHandler._drain).
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1024 * 1024
_KEPT_HEADERS = ("If-Modified-Since", "If-None-Match")


class HardenedRequestHandler(SimpleHTTPRequestHandler):
    """Handle one connection for a `flags2.servers.server.FlagServer`.

    Subclasses define ``do_GET`` and ``do_HEAD``; they set ``_in_method`` while
    they run, so that an error page they send keeps the connection open.
    """

    server: FlagServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True
    # A buffered writer, flushed at the end of each request (http.server does
    # that): a flag's head and body leave in one send, not two, which spares
    # a system call and a TCP segment on both sides of every request. What
    # must leave before a wait (100 Continue, a stall's headers) is flushed.
    # 32 KiB holds all but the largest flags with their head.
    wbufsize = 32 * 1024

    # Per-request state, reset in handle_one_request: inside do_GET/do_HEAD,
    # the status sent (or "reset"), whether /_stats counts it.
    _in_method = False
    _status: int | str | None = None
    _counted = True
    _linger = False
    _reader: HeadReader
    _input: io.BufferedReader

    # -- connection lifecycle -------------------------------------------------

    def setup(self) -> None:
        # The idle timeout is both the keep-alive timeout (no new request for
        # that long closes the connection) and the time a head (and a GET's
        # body) may take from its first byte; HeadReader keeps that clock under
        # the buffered reader of the connection.
        super().setup()
        self.rfile.close()  # the makefile() reader the base class made
        self._reader = HeadReader(self.connection, self.server.options.idle_timeout)
        self._input = io.BufferedReader(self._reader)
        self.rfile = self._input
        # And the makefile() writer: sends that run out of time say so as a
        # socket's timeout does, whoever keeps the bound (BoundedWriter).
        self.wfile.close()
        self.wfile = io.BufferedWriter(BoundedWriter(self.connection), self.wbufsize)
        self.server.stats.count_connection()

    def finish(self) -> None:
        if self._linger:
            self._drain()
        super().finish()

    def handle_one_request(self) -> None:
        self._in_method = False
        self._status = None
        self._counted = True
        self._reader.next_head()
        try:
            if self._next_head():
                super().handle_one_request()
        except OSError:
            raise  # the client went away or timed out: the server stays quiet
        except Exception:
            # A bug, not the client's doing: answer 500 if nothing was sent yet,
            # drop the connection (the stream may be out of step) and let
            # FlagServer.handle_error say so in one line.
            self.close_connection = True
            if self._status is None:
                self._in_method = False  # so the error page says Connection: close
                with contextlib.suppress(Exception):
                    self._send_error_page(HTTPStatus.INTERNAL_SERVER_ERROR)
                    self.wfile.flush()
            raise
        finally:
            self.rfile = self._input

    def _next_head(self) -> bool:
        """Read the next head whole, within bounds; False if there is none to parse.

        The base class then parses it from memory (`self.rfile` is the head
        alone until `parse_request` is done), so no header it reads can be
        bigger than `flags2.servers.head.HEAD_LIMIT` allows.
        """
        try:
            head = read_head(self._input)
        except TimeoutError:
            self.close_connection = True  # idle keep-alive, or a head too slow
            return False
        except Refused as refused:
            # Nothing of this request was parsed: forget the previous one's.
            self.command = self.request_version = self.requestline = ""
            self._refuse(refused)
            return False
        if not head:
            self.close_connection = True
            return False
        self.rfile = io.BytesIO(head)
        return True

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # A body, and the next request, come from the connection again.
        self.rfile = self._input
        if not parsed:
            return False
        if self.command in ("GET", "HEAD") and not self._skip_body():
            return False
        self._reader.head_done()
        # A GET may now sleep its delay for seconds: keep of its head only what
        # answering needs (the base class's send_head reads these two).
        kept = self.MessageClass()
        for name in _KEPT_HEADERS:
            for value in self.headers.get_all(name) or ():
                kept[name] = value
        self.headers = kept
        self.raw_requestline = b""
        return True

    def handle_expect_100(self) -> bool:
        # Refuse a body we would refuse anyway before the client sends it.
        if self.command in ("GET", "HEAD"):
            try:
                body_length(self.headers)
            except Refused as refused:
                self._refuse(refused)
                return False
        accepted = super().handle_expect_100()
        self.wfile.flush()  # the client waits for it before it sends the body
        return accepted

    def _skip_body(self) -> bool:
        # Left unread, a GET's body would be parsed as the next request.
        try:
            length = body_length(self.headers)
        except Refused as refused:
            self._refuse(refused)
            return False
        if not discard(self._input, length):
            self.close_connection = True  # the client left mid-body
            return False
        return True

    def _refuse(self, refused: Refused) -> None:
        self._in_method = False  # so the page says Connection: close
        self._send_error_page(refused.status, explain=refused.explain)

    def _drain(self) -> None:
        # Closing a socket with unread input makes the kernel send a reset,
        # which can destroy our answer before a client still sending (a big
        # head, a body) reads it. So say we are done, then read and drop what
        # still comes, for a bounded time and amount.
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            scratch = bytearray(16 * 1024)
            left = _LINGER_BYTES
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                count = self.connection.recv_into(scratch)
                if not count:
                    break
                left -= count

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        if self._counted:
            self.server.stats.count_response(code)
        super().send_response(code, message)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """Like the base class, but keep the connection alive when it is safe."""
        exc = sys.exc_info()[1]
        if (
            code == HTTPStatus.NOT_FOUND
            and isinstance(exc, OSError)
            and exc.errno in (errno.EMFILE, errno.ENFILE)
        ):
            # send_head could not open the file for want of descriptors: the
            # file exists, so say "try again", never "not found".
            self._send_error_page(
                HTTPStatus.SERVICE_UNAVAILABLE, headers=(("Retry-After", "1"),)
            )
            return
        self._send_error_page(code, message, explain)

    def _send_error_page(
        self,
        code: int,
        message: str | None = None,
        explain: str | None = None,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        short, long = self.responses.get(code, ("???", "???"))
        message = short if message is None else message
        explain = long if explain is None else explain
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        # The base class always closes after an error; that would cost 482
        # reconnections in a run over AA..ZZ. Only errors raised while parsing
        # the request (the stream may be out of sync) still close it.
        if not self._in_method:
            self.send_header("Connection", "close")
            self._linger = True
        for name, value in headers:
            self.send_header(name, value)
        content = self.error_message_format % {
            "code": code,
            "message": html.escape(message, quote=False),
            "explain": html.escape(explain, quote=False),
        }
        body = content.encode("utf-8", "replace")
        self.send_header("Content-Type", self.error_content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _method_not_allowed(self) -> None:
        self._send_error_page(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"Method {self.command} not allowed",
            headers=(("Allow", _ALLOWED),),
        )

    # Known methods get 405 + Allow; unknown ones keep the base class's 501. Both
    # close the connection: a request body we never read may follow.
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed
    do_TRACE = do_CONNECT = _method_not_allowed

    # -- logging --------------------------------------------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Replaced by the one book-style line per request written in _serve.
        pass

    def log_message(self, format: str, *args: Any) -> None:
        # Protocol-level events (bad request lines, 405s, idle timeouts) are
        # noise under load; show them only with --log, and never for GET/HEAD,
        # which get their own line.
        if format.startswith("Request timed out"):
            return  # an idle keep-alive connection expiring is the normal case
        if self.server.options.log and not self._in_method:
            line = f"{self.address_string()} - {format % args}"
            self.server.write_log(line)
