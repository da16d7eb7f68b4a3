"""HTTP/1.1 for the lean transports: heads written here, llhttp reads the answer.

:mod:`flags2.clients` (blocking) and :mod:`flags2.aioclients` (asyncio) move
bytes their own way; what the bytes mean is decided here, once. httptools
(llhttp, the parser of Node.js) reads the answer: status line, header rules
(RFC 9110/9112), Content-Length, chunks and trailers. The request head is only
written, from httpx's own Request: :func:`request_head` writes what h11 wrote,
byte for byte, with the same checks of the method, target, names and values
(h11's grammar), without h11 itself, which nothing else in a run imports
(httpx2 loads it only for its own transport) and whose import and event
machinery cost more than the rest of a request head. What this module adds on
top of the parser is only what a downloader needs:

* bounds: the head, the number of fields, the bytes between two body bytes
  (a trailer that never ends) and the body itself;
* what restarts the read clock (:attr:`Answer.progress`): the end of the
  final head and each body byte, never an interim (1xx) answer, so the whole
  head, interim answers included, must arrive within ``--timeout`` (eight
  ``100 Continue`` heads half a second apart are a timeout at 1 s, not a
  flag after 4 s);
* whether the connection may carry another request: only if the answer ended
  exactly at the last byte received and the server keeps it alive;
* httpx's own exception classes, so callers catch one hierarchy.

    >>> answer = Answer()
    >>> answer.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")
    >>> answer.complete, answer.status, bytes(answer.body), answer.reusable
    (True, 200, b'hi', True)
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import httptools
import httpx2 as httpx

__all__ = [
    "CONNECTION",
    "MAX_BODY",
    "MAX_HEAD",
    "RECV_SIZE",
    "Answer",
    "Stale",
    "broken",
    "request_head",
    "request_timeouts",
]

CONNECTION = "flags2.connection"
"""The response extension naming the TLS connection an answer came on.

Opaque: only its identity means anything, so a run can say over how many
connections its https answers came ("HTTP/1.1 over 12 connections."), as
httpx's ``network_stream`` lets it say for its own transport. Plain http does
not set it: the book's report for the bundled servers stays as printed.
"""

MAX_HEAD = 64 * 1024
"""Bytes of a response head, and of what may come between two body bytes."""
_MAX_FIELDS = 256  # header and trailer lines together
MAX_BODY = 10 * 1024 * 1024
"""A flag is about 12 KB: a body over this is not a flag, and is not buffered."""
RECV_SIZE = 65536


class Stale(Exception):
    """A reused connection closed before answering: try a fresh one."""


class _Stop(Exception):
    """Raised inside a parser callback to stop it; why is kept in the Answer."""


# h11's grammar (its _abnf module, RFC 9110): a token, a field value (no
# leading or trailing white space, no CR, LF or NUL), a request target.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_DIGITS = re.compile(rb"[0-9]{1,20}")
# The header block of a run's requests: the same few fields every time (Host,
# Accept, User-Agent...), so each distinct block is checked and written once.
_BLOCKS: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_MAX_BLOCKS = 64


def request_head(request: httpx.Request) -> bytes:
    """The request head as h11 writes it, with h11's checks of names and values.

    >>> request_head(httpx.Request("GET", "http://straße.example:8080/a b?q=1"))
    b'GET /a%20b?q=1 HTTP/1.1\\r\\nHost: xn--strae-oqa.example:8080\\r\\n...'
    """
    fields = tuple(request.headers.raw)
    block = _BLOCKS.get(fields)
    if block is None:  # h11's order of checks: the fields first
        block = _header_block(fields)
        if len(_BLOCKS) >= _MAX_BLOCKS:  # a run has one or two: never grows
            _BLOCKS.clear()
        _BLOCKS[fields] = block
    method, target = request.method.encode("ascii"), request.url.raw_path
    if _TOKEN.fullmatch(method) is None:
        raise httpx.LocalProtocolError("Illegal method characters")
    if _TARGET.fullmatch(target) is None:
        raise httpx.LocalProtocolError("Illegal target characters")
    return b"%s %s HTTP/1.1\r\n%s" % (method, target, block)


def _header_block(fields: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """The header lines and the blank line, Host first, as h11 writes them."""
    hosts: list[bytes] = []
    lines: list[bytes] = []
    length: bytes | None = None
    chunked = False
    for name, value in fields:
        if _TOKEN.fullmatch(name) is None:
            raise httpx.LocalProtocolError(f"Illegal header name {name!r}")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise httpx.LocalProtocolError(f"Illegal header value {value!r}")
        lower = name.lower()
        if lower == b"content-length":  # h11 merges "5, 5" and refuses "5, 6"
            lengths = {part.strip() for part in value.split(b",")}
            value = lengths.pop()
            if lengths or _DIGITS.fullmatch(value) is None:
                raise httpx.LocalProtocolError(
                    "conflicting Content-Length headers" if lengths
                    else "bad Content-Length"
                )  # fmt: skip
            if length is not None:
                if value != length:
                    raise httpx.LocalProtocolError("conflicting Content-Length headers")
                continue
            length = value
        elif lower == b"transfer-encoding":
            if chunked:
                raise httpx.LocalProtocolError("multiple Transfer-Encoding headers")
            value = value.lower()
            if value != b"chunked":
                raise httpx.LocalProtocolError(
                    "Only Transfer-Encoding: chunked is supported"
                )
            chunked = True
        line = b"%s: %s\r\n" % (name, value)
        (hosts if lower == b"host" else lines).append(line)
    if not hosts:
        raise httpx.LocalProtocolError("Missing mandatory Host: header")
    if len(hosts) > 1:
        raise httpx.LocalProtocolError("Found multiple Host: headers")
    return b"".join(hosts + lines) + b"\r\n"


class Answer:
    """One response, fed as it arrives; callbacks of ``httptools.HttpResponseParser``.

    Interim (1xx) heads are skipped. Whatever comes after the answer is never
    parsed: the parser stops on the answer's last byte, and the connection is
    then not reused unless that byte was the last one received.

    A callback stops the parser by raising; httptools then raises
    ``HttpParserCallbackError`` from ``feed_data``. Why it stopped (the end of
    the answer, or the error to raise) is recorded by the callback itself in
    ``complete`` and ``_error``: nothing is read back from the exception, whose
    ``__context__`` httptools sets by hand and does not document.
    """

    __slots__ = (
        "_error",
        "_fields",
        "_framed",
        "_heading",
        "_length",
        "_loose",
        "_parser",
        "_size",
        "body",
        "complete",
        "headers",
        "keep_alive",
        "reason",
        "received",
        "reusable",
        "status",
        "version",
    )

    def __init__(self) -> None:
        # The parser holds this Answer's callbacks and the Answer holds the
        # parser: a cycle, so it is dropped as soon as the answer ends or
        # fails, and the body is freed with the last reference to the Answer,
        # not at the next garbage collection (676 bodies at -m 1000).
        parser = httptools.HttpResponseParser(self)
        self._parser: httptools.HttpResponseParser | None = parser
        # A head may end its lines with a bare LF (RFC 9112, 2.2), as httpx2's
        # h11 allows; chunks and trailers may not (h11 refuses them too), so
        # the parser is made strict again once the head is read.
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self.status = 0
        self.reason = b""
        self.version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False
        self.reusable = False
        self.received = 0  # bytes of the connection since the request
        self._heading = True  # still reading a head
        self._framed = False  # Content-Length or chunked: EOF is not the end
        self._loose = 0  # bytes fed since the last body byte (or the start)
        self._fields = 0
        self._size = 0  # bytes of header and trailer fields
        self._error: httpx.RemoteProtocolError | None = None  # why a callback stopped
        self._length = ""  # the announced Content-Length, for error messages

    @property
    def progress(self) -> int:
        """Grows at the end of the final head and with each body byte: what
        restarts the read clock. Interim (1xx) answers do not: the whole head,
        interim answers included, is bounded by one timeout."""
        return len(self.body) + (not self._heading)

    def feed(self, data: bytes) -> None:
        """Parse `data`; raises httpx.RemoteProtocolError for a malformed answer."""
        if not self.received and data[:1] in (b"\r", b"\n"):
            # llhttp skips blank lines before a status line; h11 refuses them.
            raise httpx.RemoteProtocolError("blank line before the status line")
        self.received += len(data)
        if self.complete:
            self.reusable = False  # bytes after the answer: never reuse it
            return
        before = len(self.body)
        view = memoryview(data)  # the two parts without copying the buffer
        # The last byte alone: if the answer ends before it, bytes follow it.
        if len(data) > 1:
            self._parse(view[:-1])
        if self.complete:
            self.reusable = False
        else:
            self._parse(view[-1:])
            self.reusable = self.complete and self.keep_alive
        if len(self.body) > before:
            self._loose = 0
        else:
            self._loose += len(data)
        if self._loose > MAX_HEAD and not self.complete:
            what = "response head" if self._heading else "gap in the response body"
            raise httpx.RemoteProtocolError(f"{what} over {MAX_HEAD} bytes")

    def eof(self) -> None:
        """The server closed the connection; the answer must be whole by now."""
        if self.complete:
            return
        if self._heading:
            raise _disconnected()
        if self._framed:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body:"
                f" received {len(self.body)} bytes{self._length}"
            )
        self.complete = True  # the body ran until the close, as announced
        self.reusable = False

    def _parse(self, data: memoryview) -> None:
        parser = self._parser
        if parser is None:  # stopped already: the answer ended, or failed
            if self._error is not None:
                raise self._error
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parser = None  # stopped for good: the end, or an error
            # Our own record first: a callback that stopped the parser said why.
            if self.complete:
                return  # stopped on the answer's last byte
            if self._error is not None:
                raise self._error from None
            self._error = httpx.RemoteProtocolError(f"malformed response: {exc}")
            raise self._error from exc
        except httptools.HttpParserUpgrade:
            self._parser = None
            self._error = httpx.RemoteProtocolError(
                "unexpected protocol switch (101) in the response"
            )
            raise self._error from None

    # -- httptools callbacks ---------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._size += len(name) + len(value) + 4
        if self._fields > _MAX_FIELDS:
            self._fail("too many response header fields")
        if self._size > MAX_HEAD:
            self._fail(f"response head over {MAX_HEAD} bytes")
        if self._heading:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # a callback runs only while it parses
        self.status = parser.get_status_code()
        if self.status < 200:
            return  # an interim answer: its end resets everything below
        self._heading = False
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=False)
        self.version = b"HTTP/" + parser.get_http_version().encode("ascii")
        codings = [v for n, v in self.headers if n.lower() == b"transfer-encoding"]
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
            # As httpx's own transport (h11): chunked is the only coding known.
            self._fail(f"unsupported Transfer-Encoding: {b', '.join(codings)!r}")
        lengths = [v for n, v in self.headers if n.lower() == b"content-length"]
        if lengths and lengths[0].strip().isdigit():
            if int(lengths[0]) > MAX_BODY:
                self._fail(_TOO_BIG)
            self._length = f", expected {int(lengths[0])}"
        self._framed = bool(codings or lengths)

    def on_body(self, data: bytes) -> None:
        if len(self.body) + len(data) > MAX_BODY:
            self._fail(_TOO_BIG)
        self.body += data

    def on_message_complete(self) -> None:
        if self._heading:  # the end of an interim answer: the real one follows
            self.status, self.reason, self._fields, self._size = 0, b"", 0, 0
            self.headers = []
            return
        self.complete = True
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive()
        self._parser = None
        raise _Stop  # nothing after the answer is parsed

    def _fail(self, message: str) -> NoReturn:
        self._error = httpx.RemoteProtocolError(message)
        self._parser = None
        raise _Stop

    def extensions(self, connection: object = None) -> dict[str, Any]:
        """httpx's response extensions, and `connection` (if any) as CONNECTION."""
        found: dict[str, Any] = {
            "http_version": self.version,
            "reason_phrase": self.reason.strip(),
        }
        if connection is not None:
            found[CONNECTION] = connection
        return found


_TOO_BIG = f"response body over {MAX_BODY} bytes: not a flag"


def _disconnected() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def request_timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts


def broken(exc: OSError, reused: bool, error: type[httpx.TransportError]) -> Exception:
    """What an OSError on a connection means: a stale reused one, or `error`."""
    return Stale() if reused else error(str(exc))
