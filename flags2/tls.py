"""TLS for the lean transports, and the one look at what an https server speaks.

The lean transports (:mod:`flags2.clients`, :mod:`flags2.aioclients`) carry
https over HTTP/1.1 with the context httpx2 itself would build
(``httpx.create_ssl_context()``: ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, the
system store or truststore), offering only ``http/1.1`` by ALPN, since they
speak nothing else. They present the host's IDNA A-label as the server name,
the name they connect to and the Host header carries. A handshake that fails
is httpx's ``ConnectError`` raised from the ssl error, as httpx2's own
transport raises it, so :func:`flags2.failures.cause_of` finds the
certificate's fault in the chain either way.

:func:`negotiated` is one connection made before a run that offers HTTP/2
(see :class:`flags2.clientplan.ClientPlan`): the server's ALPN answer decides
whether the run's requests are HTTP/2 streams (httpx2's transport) or HTTP/1.1
on the lean transport's keep-alive connections. One handshake costs what one
more connection costs, and it saves an HTTP/1.1-only server from httpx2's pool
of many small clients. Its TLS session (:class:`Sessions`) is the one the lean
transport's connections then resume: a resumed handshake skips the
certificate's check on both sides. Under ``--http1.1`` the probe offers
HTTP/1.1 alone, for that session only.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx2 as httpx

__all__ = [
    "HTTP1_ONLY",
    "Sessions",
    "TLSLayer",
    "lean_context",
    "negotiated",
    "tls_connect_error",
]

HTTP1_ONLY = ["http/1.1"]
_BOTH = ["h2", "http/1.1"]


def lean_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """httpx2's context for `verify`, offering HTTP/1.1 only (ALPN).

    A context given is used as it is, but for its ALPN offer: httpcore sets
    the offer again on every connection it makes, so sharing it is safe.
    """
    context = httpx.create_ssl_context(verify)
    context.set_alpn_protocols(HTTP1_ONLY)
    return context


class Sessions:
    """The TLS session each server last gave, for later handshakes to resume.

    A full handshake is mostly the certificate's check, in the client and
    the server alike; a resumed one skips it, as curl and browsers do. A
    session belongs to the context that made it (ssl refuses it on another):
    one `Sessions` serves one context, the plan's, which the lean transports
    use as it is. A new connection offers its session once its first answer
    is in, when a TLS 1.3 server's ticket has arrived with it; one that
    resumed brings nothing new.
    """

    __slots__ = ("_by_server",)

    def __init__(self) -> None:
        self._by_server: dict[tuple[str, int], ssl.SSLSession] = {}

    def get(self, host: str, port: int) -> ssl.SSLSession | None:
        """The session to offer to `host`:`port`, if one was kept."""
        return self._by_server.get((host, port))

    def keep(self, host: str, port: int, tls: ssl.SSLObject | ssl.SSLSocket) -> None:
        """Keep `tls`'s session for `host`:`port` if it is new and resumable."""
        if tls.session_reused:
            return
        session = tls.session
        if session is not None and session.has_ticket:
            self._by_server[(host, port)] = session


class TLSLayer:
    """TLS for an ``asyncio.Protocol`` that is its own TLS layer: ssl's memory BIOs.

    asyncio's own TLS transport keeps a 256 KiB read buffer per connection:
    at ``-m 1000`` that is a quarter of a gigabyte for 12 KB flags. Here the
    protocol hands what arrives to :meth:`put`, drives :meth:`handshake`, reads
    :meth:`plaintext` and writes :meth:`outgoing` (and :meth:`encrypt`), all
    ssl's public ``SSLObject`` API, as httpcore's blocking TLS-in-TLS does.
    """

    __slots__ = ("_in", "_obj", "_out", "ended")

    def __init__(
        self, context: ssl.SSLContext, host: str, session: ssl.SSLSession | None = None
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in, self._out, server_hostname=host, session=session
        )
        self.ended = False
        """The server said close_notify: nothing more will come."""

    @property
    def tls(self) -> ssl.SSLObject:
        """ssl's object for this connection (its session, its protocol)."""
        return self._obj

    def put(self, data: bytes) -> None:
        """Bytes from the network, to be read by the handshake or as plaintext."""
        self._in.write(data)

    def handshake(self) -> bool:
        """Advance the handshake: True once it is done; ssl.SSLError if it fails."""
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def plaintext(self) -> bytes:
        """What the bytes put so far decrypt to; b"" for records that carry no
        data (a session ticket). ssl.SSLError for a record that is not TLS."""
        chunks = []
        while True:
            try:
                chunk = self._obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.ended = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, data: bytes) -> bytes:
        """`data` as records to send (with anything else due out first)."""
        self._obj.write(data)
        return self._out.read()

    def outgoing(self) -> bytes:
        """Bytes the TLS layer itself has to send (handshake, alerts)."""
        return self._out.read()


_READ_SIZE = 65536


def tls_connect_error(exc: ssl.SSLError) -> httpx.ConnectError:
    """A failed handshake in httpx's words; raise it ``from exc``."""
    return httpx.ConnectError(str(exc))


@contextlib.contextmanager
def connect_errors() -> Iterator[None]:
    """A connection that could not be made, in httpx's words: a timeout (of
    the lookup, every address and the handshake together), a failed TLS
    handshake, or any other OSError (a label over 63 bytes: UnicodeError)."""
    try:
        yield
    except TimeoutError:
        raise httpx.ConnectTimeout("timed out") from None
    except ssl.SSLError as exc:
        raise tls_connect_error(exc) from exc
    except (OSError, UnicodeError) as exc:
        raise httpx.ConnectError(str(exc)) from exc


def negotiated(
    base_url: str,
    context: ssl.SSLContext,
    timeout: float | None,
    sessions: Sessions | None = None,
    *,
    offer: list[str] | None = None,
) -> str | None:
    """What the server of `base_url` answers to an offer of h2 and http/1.1
    (or of `offer`).

    ``"h2"``, ``"http/1.1"`` (also for a server that does not use ALPN), or
    None when no handshake completed within `timeout` (refused, not trusted,
    silent): the run's own requests then meet the same failure, on the lean
    transport, in httpx's words. The lookup, the connection
    and the handshake together get `timeout`, in a daemon thread that a probe
    given up on leaves behind (``getaddrinfo`` cannot be interrupted); its
    answer is then ignored. The offer stays on `context`: httpcore sets its
    own on each connection, and :func:`lean_context` sets HTTP/1.1 only.

    With `sessions`, a probe answered ``http/1.1`` also waits a moment (twice
    its connect time) for the server's session ticket and keeps it: the lean
    transport's first burst of connections then resumes that session instead
    of each checking the certificate again (HTTP/2 goes by httpx2's transport,
    over few connections).
    """
    url = httpx.URL(base_url)
    try:
        host = url.raw_host.decode("ascii")
    except UnicodeError:
        return None
    port = url.port or 443
    context.set_alpn_protocols(offer or _BOTH)
    answer: list[str | None] = []

    def ask() -> None:
        try:
            start = time.monotonic()
            with socket.create_connection((host, port), timeout) as sock:
                connect_time = time.monotonic() - start
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    protocol = tls.selected_alpn_protocol() or "http/1.1"
                    answer.append(protocol)
                    if sessions is not None and protocol != "h2":
                        if tls.version() == "TLSv1.3":  # 1.2: it came already
                            _await_ticket(tls, 2 * connect_time + _TICKET_SLACK)
                        sessions.keep(host, port, tls)
        except (OSError, UnicodeError):
            if not answer:
                answer.append(None)

    probe = threading.Thread(target=ask, name="flags2-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return answer[0] if answer else None


# A TLS 1.3 ticket follows the handshake by about one round trip; this covers
# a loopback's scheduling, where the connect time says almost nothing.
_TICKET_SLACK = 0.01


def _await_ticket(tls: ssl.SSLSocket, wait: float) -> None:
    """Read what follows the handshake for up to `wait` s, until a ticket is in.

    A TLS 1.3 server sends its tickets after the handshake, as records that
    carry no data, which ssl processes on a read. The server sends nothing
    else before a request, so a read that would block means "nothing yet".
    """
    deadline = time.monotonic() + wait
    tls.setblocking(False)
    while not (tls.session is not None and tls.session.has_ticket):
        left = deadline - time.monotonic()
        try:
            if left <= 0 or not select.select([tls], [], [], left)[0]:
                return
        except ValueError:  # a descriptor above select's FD_SETSIZE: no wait
            return
        try:
            tls.recv(1)
        except ssl.SSLWantReadError:
            continue
        return  # a byte, or the end: nothing more to wait for
