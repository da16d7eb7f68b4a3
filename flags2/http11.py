"""HTTP/1.1, the few parts a GET needs: the framing both lean transports share.

:mod:`flags2.clients` (blocking) and :mod:`flags2.aioclients` (asyncio) read
bytes their own way; what the bytes mean is decided here, once: the request
head we send (checked as h11 checks it), the response head and how its body
is framed (Content-Length, chunked, or until close), and the errors, in
httpx's own classes and words.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

__all__ = [
    "CHUNK",
    "IDEMPOTENT",
    "MAX_LINE",
    "Head",
    "Stale",
    "broken",
    "chunk_size",
    "head_line",
    "incomplete",
    "request_head",
    "request_timeouts",
    "response_extensions",
]

MAX_LINE = 65536  # longest status or header line accepted
_MAX_HEADERS = 200
CHUNK = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_HEX = frozenset(b"0123456789abcdefABCDEF")
# A stale keep-alive connection is retried on a fresh one only for methods
# that are safe to send twice.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_TOKEN = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


class Head:
    """A parsed response head and how its body is framed."""

    __slots__ = (
        "chunked",
        "headers",
        "keep_alive",
        "length",
        "reason",
        "status",
        "version",
    )

    def __init__(self, lines: list[bytes], method: bytes) -> None:
        version, _, rest = lines[0].rstrip(b"\r\n").partition(b" ")
        code, _, reason = rest.partition(b" ")
        if (
            version not in (b"HTTP/1.0", b"HTTP/1.1")
            or len(code) != 3
            or not code.isdigit()
        ):
            raise httpx.RemoteProtocolError(f"malformed status line: {lines[0]!r}")
        self.version = version
        self.status = int(code)
        self.reason = reason.strip()
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = until_close = False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"malformed header line: {line!r}")
            value = value.strip()
            headers.append((name, value))
            lname = name.lower()
            if lname == b"content-length":
                if (
                    not value.isdigit()
                    or len(value) > 18
                    or (length is not None and int(value) != length)
                ):
                    raise httpx.RemoteProtocolError(f"bad Content-Length: {value!r}")
                length = int(value)
            elif lname == b"transfer-encoding":
                codings = [t.strip() for t in value.lower().split(b",")]
                chunked = codings[-1] == b"chunked"
                until_close = not chunked  # another coding: the close ends it
            elif lname == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens:
                    close = False
        self.headers = headers
        if method == b"HEAD" or self.status in _NO_BODY_STATUSES:
            chunked, length = False, 0
        elif chunked or until_close:
            if length is not None or until_close:  # RFC 9112: do not reuse it
                close = True
            length = None
        elif length is None:
            close = True  # the body runs until the server closes
        self.chunked = chunked
        self.length = length
        self.keep_alive = not close

    @property
    def interim(self) -> bool:
        """A 1xx answer, followed by the real one (101 is never asked for)."""
        return 100 <= self.status < 200


def head_line(lines: list[bytes], line: bytes, method: bytes) -> Head | None:
    """Take one line of a response head; return the head once it is complete.

    Both transports read lines their own way and hand them here. An interim
    (1xx) head is dropped and `lines` starts over for the answer that follows.
    """
    if not line:
        raise _disconnected()
    if lines and line in (b"\r\n", b"\n"):
        head = Head(lines, method)
        lines.clear()
        return None if head.interim else head
    if len(lines) > _MAX_HEADERS:
        raise httpx.RemoteProtocolError("too many response headers")
    lines.append(line.rstrip(b"\r\n"))
    return None


def request_head(request: httpx.Request) -> bytes:
    method = request.method.encode("ascii")
    if not method or not _TOKEN.issuperset(method):
        raise httpx.LocalProtocolError(f"Illegal method {method!r}")
    head = [method + b" " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        # As h11 does: a CR or LF here would inject headers or a whole request.
        if (
            not name
            or not _TOKEN.issuperset(name)
            or any(c in value for c in b"\r\n\0")
        ):
            raise httpx.LocalProtocolError(f"Illegal header {name!r}: {value!r}")
        head.append(name + b": " + value)
    return b"\r\n".join(head) + b"\r\n\r\n"


def chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16 or not _HEX.issuperset(size):
        raise httpx.RemoteProtocolError(f"malformed chunk size: {line!r}")
    return int(size, 16)


def incomplete(received: int, expected: int | None) -> httpx.RemoteProtocolError:
    wanted = f", expected {expected}" if expected is not None else ""
    return httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body:"
        f" received {received} bytes{wanted}"
    )


def _disconnected() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def response_extensions(head: Head) -> dict[str, Any]:
    return {"http_version": head.version, "reason_phrase": head.reason}


def request_timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts


class Stale(Exception):
    """A reused connection closed before answering: try a fresh one."""


def broken(exc: OSError, reused: bool, error: type[httpx.TransportError]) -> Exception:
    """What an OSError on a connection means: a stale reused one, or `error`."""
    return Stale() if reused else error(str(exc))
