"""What one request may send: a bounded head, and on GET or HEAD a small body.

`read_head` reads a request head (the request line, the header lines, the blank
line) off the connection before `http.server` parses it, and refuses one that is
too big to hold:

* at most `HEAD_LIMIT` bytes in all (16 KiB, Node.js's default; the flags2
  clients send under 200 bytes), answered ``431 Request Header Fields Too
  Large``, or ``414 URI Too Long`` when the request line alone is over;
* at most `HEADER_LINES` header lines (64, within the standard library's own
  100), answered ``431``.

Either answer closes the connection. Together with the cap on connections
(`flags2.servers.limits.MAX_CONNECTIONS`) this bounds what heads can make a
server hold, whatever clients send.

A GET or HEAD has no use for a body, but one that comes is part of the stream,
and left unread it would be parsed as the next request: a ``GET`` whose body is
``GET /_stats ...`` was answered twice. So `body_length` reads the framing and
the handler discards a ``Content-Length`` body of up to `BODY_LIMIT` bytes
(64 KiB; read in fixed chunks, never held) before answering once, on a
connection that stays open. A bigger body is ``413 Content Too Large``; a
``Transfer-Encoding`` (chunked framing is never parsed by hand here) or a
``Content-Length`` that is not one decimal number is ``400``; both close the
connection.
"""

from __future__ import annotations

import io
from email.message import Message
from http import HTTPStatus

__all__ = [
    "BODY_LIMIT",
    "HEADER_LINES",
    "HEAD_LIMIT",
    "Refused",
    "body_length",
    "discard",
    "read_head",
]

HEAD_LIMIT = 16 * 1024
"""Bytes a request head may take, request line and blank line included."""

HEADER_LINES = 64
"""Header lines a request head may have (continuation lines count)."""

BODY_LIMIT = 64 * 1024
"""Bytes of body a GET or HEAD may carry; they are read and thrown away."""

_BLANK = (b"\r\n", b"\n")
_CHUNK = 16 * 1024


class Refused(Exception):
    """A request that is answered with `status` and then closed."""

    def __init__(self, status: HTTPStatus, explain: str) -> None:
        super().__init__(explain)
        self.status = status
        self.explain = explain


def read_head(reader: io.BufferedIOBase) -> bytes:
    """Read one request head from `reader`; return its bytes, ``b""`` at EOF.

    Stops after the blank line that ends the head, so whatever follows (a body,
    the next request) stays in `reader`. A head cut short by EOF is returned as
    it is; `http.server` reads EOF as the end of its headers. Raises `Refused`
    when the head is over `HEAD_LIMIT` bytes or `HEADER_LINES` lines, having
    read at most `HEAD_LIMIT` + 1 bytes of it.
    """
    lines: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(HEAD_LIMIT - size + 1)
        size += len(line)
        if size > HEAD_LIMIT:
            if not lines:
                raise Refused(
                    HTTPStatus.REQUEST_URI_TOO_LONG,
                    f"The request line is longer than {HEAD_LIMIT} bytes.",
                )
            raise Refused(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"The request head is longer than {HEAD_LIMIT} bytes.",
            )
        if not line:
            return b"".join(lines)
        lines.append(line)
        # A blank first line is no request at all: http.server drops the
        # connection on it, so hand it over at once rather than wait for more.
        if line in _BLANK:
            return b"".join(lines)
        if len(lines) > HEADER_LINES + 1:
            raise Refused(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"The request head has more than {HEADER_LINES} header lines.",
            )


def body_length(headers: Message) -> int:
    """Return the length of the body that `headers` announce (0 for none).

    Raises `Refused` for a ``Transfer-Encoding``, a ``Content-Length`` that is
    not one decimal number (repeated values must agree, as RFC 9110 allows),
    or a body over `BODY_LIMIT`.
    """
    if headers.get_all("Transfer-Encoding"):
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "A GET or HEAD request must not carry a Transfer-Encoding.",
        )
    values = headers.get_all("Content-Length") or []
    # "5, 5" and two "5" headers both say 5; anything else is ambiguous framing.
    numbers = {part.strip() for value in values for part in str(value).split(",")}
    if not numbers:
        return 0
    number = numbers.pop() if len(numbers) == 1 else ""
    # isascii: "²".isdigit() is true, and int() would take " 5" or Arabic digits.
    if not (number.isascii() and number.isdigit()):
        raise Refused(
            HTTPStatus.BAD_REQUEST, "The Content-Length is not one decimal number."
        )
    length = int(number)
    if length > BODY_LIMIT:
        raise Refused(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"A GET or HEAD may carry at most {BODY_LIMIT} bytes of body.",
        )
    return length


def discard(reader: io.BufferedIOBase, length: int) -> bool:
    """Read and drop `length` bytes from `reader`; False if EOF came first."""
    while length > 0:
        chunk = reader.read(min(length, _CHUNK))
        if not chunk:
            return False
        length -= len(chunk)
    return True
