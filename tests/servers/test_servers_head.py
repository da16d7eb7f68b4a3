"""A request's head and body on the wire: size bounds, and one answer per GET."""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest

from flags2.servers.handler import FlagRequestHandler
from flags2.servers.head import BODY_LIMIT, HEAD_LIMIT, HEADER_LINES
from flags2.servers.testing import RawResponse, ServerFactory, read_response

GIF = b"GET /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n"
NEXT = b"GET /flags/cn/cn.gif HTTP/1.1\r\nHost: t\r\n\r\n"
# What a GET's body would smuggle in if it were parsed as a request.
SMUGGLED = b"GET /_stats HTTP/1.1\r\nHost: t\r\n\r\n"


def _head_response(reader: io.BufferedIOBase) -> RawResponse:
    """Read a response to HEAD: status and headers, never a body."""
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, b"")


def _exchange(port: int, data: bytes, answers: int) -> tuple[list[RawResponse], bytes]:
    """Send `data`, read `answers` responses to GETs, then all that follows."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        with sock.makefile("rb") as reader:
            responses = [read_response(reader) for _ in range(answers)]
            sock.shutdown(socket.SHUT_WR)
            return responses, reader.read()


def _refused(port: int, data: bytes) -> RawResponse:
    """The one answer to `data`, which must be followed by the end of the stream."""
    (response,), rest = _exchange(port, data, 1)
    assert response.headers["connection"] == "close"
    assert rest == b""  # closed, and nothing else was answered
    return response


def _padded_head(size: int) -> bytes:
    """A GET of br.gif whose head is exactly `size` bytes."""
    fixed = len(GIF) + len(b"X-Pad: \r\n\r\n")
    return GIF + b"X-Pad: " + b"a" * (size - fixed) + b"\r\n\r\n"


def test_a_head_of_the_limit_is_served_and_the_connection_lives_on(
    start_server: ServerFactory,
) -> None:
    server = start_server("local")
    head = _padded_head(HEAD_LIMIT)
    assert len(head) == HEAD_LIMIT
    responses, _ = _exchange(server.port, head + NEXT, 2)
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].body.startswith(b"GIF8")


def test_a_head_over_the_limit_is_431_and_closed(start_server: ServerFactory) -> None:
    server = start_server("local")
    # Each line is far below the standard library's 64 KB line limit.
    response = _refused(server.port, _padded_head(HEAD_LIMIT + 1) + NEXT)
    assert response.status == 431
    assert str(HEAD_LIMIT) in response.body.decode()


def test_too_many_header_lines_is_431_and_closed(start_server: ServerFactory) -> None:
    server = start_server("local")
    lines = b"".join(b"X-%d: a\r\n" % i for i in range(HEADER_LINES + 1))
    response = _refused(server.port, GIF + lines + b"\r\n" + NEXT)
    assert response.status == 431
    # As many as allowed are fine.
    lines = b"".join(b"X-%d: a\r\n" % i for i in range(HEADER_LINES - 1))
    assert _exchange(server.port, GIF + lines + b"\r\n", 1)[0][0].status == 200


def test_a_request_line_over_the_limit_is_414_and_closed(
    start_server: ServerFactory,
) -> None:
    server = start_server("local")
    target = b"/flags/" + b"a" * HEAD_LIMIT
    response = _refused(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 414


def test_the_431_reaches_a_client_still_sending_its_head(
    start_server: ServerFactory,
) -> None:
    server = start_server("local")
    # Far more than the server reads before it answers. Closing on the unread
    # rest would reset the connection: the client's send then fails (and a
    # client that stops at a failed send never reads the answer).
    head = GIF + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(110))
    failed: list[OSError] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # A small send buffer, so the rest is still to send when the answer
        # comes, as on a real network.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def send() -> None:
            try:
                sock.sendall(head + b"\r\n")
            except OSError as exc:
                failed.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        with sock.makefile("rb") as reader:
            response = read_response(reader)
        sender.join()
    assert response.status == 431
    assert failed == []


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_body_is_discarded_and_the_request_answered_once(
    start_server: ServerFactory, method: str
) -> None:
    server = start_server("local")
    request = (
        f"{method} /flags/br/br.gif HTTP/1.1\r\nHost: t\r\n"
        f"Content-Length: {len(SMUGGLED)}\r\n\r\n"
    ).encode() + SMUGGLED
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request + NEXT)
        with sock.makefile("rb") as reader:
            first = (_head_response if method == "HEAD" else read_response)(reader)
            second = read_response(reader)
            sock.shutdown(socket.SHUT_WR)
            rest = reader.read()
    assert first.status == 200
    assert first.headers.get("connection") != "close"
    # The next answer is the next request's, the smuggled one never comes.
    assert second.status == 200
    assert second.headers["content-type"] == "image/gif"
    assert rest == b""
    assert server.stats.snapshot()["requests"] == {"200": 2}


def test_a_body_of_the_limit_is_discarded(start_server: ServerFactory) -> None:
    server = start_server("local")
    body = b"x" * BODY_LIMIT
    head = GIF + f"Content-Length: {len(body)}\r\n\r\n".encode()
    responses, rest = _exchange(server.port, head + body + NEXT, 2)
    assert [r.headers["content-type"] for r in responses] == ["image/gif"] * 2
    assert rest == b""


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"Transfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: identity", 400),
        (b"Content-Length: %d" % (BODY_LIMIT + 1), 413),
        (b"Content-Length: 5\r\nContent-Length: 6", 400),
        (b"Content-Length: 5, 6", 400),
        (b"Content-Length: +5", 400),
        (b"Content-Length: \xc2\xb2", 400),  # "²", which str.isdigit() accepts
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked", 400),
    ],
)
def test_a_body_that_cannot_be_skipped_safely_is_refused_and_closed(
    start_server: ServerFactory, header: bytes, status: int
) -> None:
    server = start_server("local")
    body = b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
    response = _refused(server.port, GIF + header + b"\r\n\r\n" + body)
    assert response.status == status
    assert server.stats.snapshot()["requests"] == {str(status): 1}


def test_repeated_equal_content_lengths_are_one_length(
    start_server: ServerFactory,
) -> None:
    server = start_server("local")
    head = GIF + b"Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"
    responses, _ = _exchange(server.port, head + b"hello" + NEXT, 2)
    assert [r.status for r in responses] == [200, 200]


def test_a_refused_body_is_never_asked_for(start_server: ServerFactory) -> None:
    server = start_server("local")
    head = GIF + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (
        BODY_LIMIT + 1
    )
    # 413 at once, no "100 Continue" first: the client need not send the body.
    assert _refused(server.port, head).status == 413


def test_a_get_without_a_body_keeps_the_connection_alive(
    start_server: ServerFactory,
) -> None:
    server = start_server("delay")
    responses, _ = _exchange(
        server.port, GIF + b"Content-Length: 0\r\n\r\n" + NEXT + SMUGGLED, 3
    )
    assert [r.status for r in responses] == [200, 200, 200]
    assert json.loads(responses[2].body)["connections"] == 1


def test_a_get_keeps_only_the_headers_it_needs_while_it_waits(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[tuple[str, str]], bytes]] = []
    real = FlagRequestHandler._send_normal

    def record(self: FlagRequestHandler, *, head: bool) -> None:
        seen.append((list(self.headers.items()), self.raw_requestline))
        real(self, head=head)

    monkeypatch.setattr(FlagRequestHandler, "_send_normal", record)
    server = start_server("delay")
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 200) for i in range(40))
    head = GIF + lines + b'If-None-Match: "x"\r\n\r\n'
    assert _exchange(server.port, head, 1)[0][0].status == 200
    # Sleeping its delay, the request held its whole head: now just this.
    assert seen == [([("If-None-Match", '"x"')], b"")]


def test_a_body_must_arrive_within_the_head_s_deadline(
    start_server: ServerFactory,
) -> None:
    server = start_server("local", idle_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(GIF + b"Content-Length: 10\r\n\r\nab")
        # Never answered: dropped once the head's clock runs out.
        assert sock.recv(100) == b""
