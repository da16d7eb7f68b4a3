"""HTTP clients sized to the run, lent out one connection slot at a time.

One run shares its clients among all its requests. A *lease* is one slot:
there are exactly as many leases as concurrent requests, so no request ever
waits for a pool slot, and the lease queue is also the book's semaphore::

    with ClientPool(settings) as pool:
        with pool.lease() as client:
            client.get(url)

For a plain ``http://`` server (the bundled ones, a local nginx), and for an
``https://`` one that speaks HTTP/1.1 (``--http1.1``, or a server whose ALPN
answer is ``http/1.1``: :mod:`flags2.clientplan`), the run has a single client
whose transport is :class:`PlainHTTPTransport` (or its async twin in
:mod:`flags2.aioclients`): GETs on keep-alive sockets, with a free list of
idle connections instead of a pool that is scanned on every request (httpx's
own pool checks every connection it holds each time it assigns one, which at
``-m 1000`` costs more than the request). The bytes are written and read by
the maintained parsers in :mod:`flags2.http11`, over TLS as :mod:`flags2.tls`
sets it up. The transport plugs into httpx through its public transport API,
so redirects, cookies, decoding, timeouts and httpx's exception classes are
unchanged; anything else (a body, https when the environment names a proxy
for it) goes to an httpx client of its own
(:func:`flags2.clientplan.fallback_options`), which honours ``HTTPS_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` as plain httpx2 does (a client given
``transport=`` ignores them).

Both lean transports connect to the name the Host header carries: the host's
IDNA 2008 A-label (``url.raw_host``), never the Unicode name, which the socket
layer would encode by IDNA 2003 (``straße.example`` would reach
``strasse.example`` while asking for ``xn--strae-oqa.example``); over TLS it is
also the server name the certificate must match. The connect timeout bounds a
whole connection, as in asyncio: the name lookup (in a thread of its own, once
per host for the run), every address tried, and the TLS handshake, together.

For HTTP/2, or when the environment names a proxy, the run uses httpx's own
transport, split over several clients (one pool of 1000 spends more time
scanning itself than waiting on the network).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx2 as httpx

from flags2 import portable
from flags2.clientplan import (
    ClientPlan,
    Origin,
    fallback_options,
    lean_request,
    origin,
)
from flags2.http11 import (
    RECV_SIZE,
    Answer,
    Stale,
    broken,
    request_head,
    request_timeouts,
)
from flags2.settings import Settings
from flags2.tls import Sessions, connect_errors, lean_context

if TYPE_CHECKING:
    from flags2.h2transport import PrivateLoop

__all__ = ["ClientPool", "PlainHTTPTransport"]


# -- the lean transport ---------------------------------------------------------


class _Conn:
    __slots__ = ("bounds", "key", "reused", "sock")

    def __init__(self, sock: socket.socket, key: Origin) -> None:
        self.sock = sock
        self.key = key
        self.reused = False
        self.bounds = portable.SocketBounds(sock)

    def idle_and_open(self) -> bool:
        """Nothing to read while idle; readable means closed (EOF), or garbage.

        First `portable.readable_now`, one system call, and usually the
        answer: nothing waits on the socket (and, over TLS, nothing decrypted
        is left over). Else, and where there is no ``poll``, a non-blocking
        peek. Over TLS it is a read of the TLS layer instead (an SSLSocket
        takes no flags): a session ticket is no byte, a close_notify is the
        end, and a byte already decrypted (``pending()``) is one nobody asked
        for. The exchange sets the socket's timeout again before it writes.
        """
        sock = self.sock
        if portable.readable_now(sock.fileno()) is False and not (
            isinstance(sock, ssl.SSLSocket) and sock.pending()
        ):
            return True
        sock.setblocking(False)
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.recv(1)
            else:
                sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True  # nothing there: idle and open
        except OSError:
            return False  # reset while idle
        return False  # b"" (closed) or a byte nobody asked for

    def close(self) -> None:
        self.sock.close()


class PlainHTTPTransport(httpx.BaseTransport):
    """Blocking HTTP/1.1 GETs over keep-alive sockets; the rest goes to httpx's own.

    Thread-safe; it never holds more idle connections than were ever in use
    at once, and opens a new one whenever none is idle. The whole answer is
    read before it is returned (a flag is small, and a body is capped), so a
    connection goes back to the free list as soon as its answer is in.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable
        tls: bool = True,
        sessions: Sessions | None = None,
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        self._sessions = Sessions() if sessions is None else sessions
        self._fallback: httpx.Client | None = None
        self._idle: dict[Origin, list[_Conn]] = {}
        self._lookups: dict[tuple[str, int], _Lookup] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not lean_request(request, tls=self._tls):
            return self._https().send(request, stream=True)
        key = origin(request.url)
        timeouts = request_timeouts(request)
        data = request_head(request)
        while True:
            conn = self._checkout(key) or self._connect(key, timeouts.get("connect"))
            try:
                answer = self._exchange(conn, data, timeouts)
            except Stale:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
            self._release(conn, reuse=answer.reusable)
            return httpx.Response(
                answer.status,
                headers=answer.headers,
                stream=httpx.ByteStream(bytes(answer.body)),
                extensions=answer.extensions(conn if key[0] == "https" else None),
            )

    def _exchange(
        self, conn: _Conn, data: bytes, timeouts: dict[str, float | None]
    ) -> Answer:
        sock = conn.sock
        try:
            conn.bounds.arm(timeouts.get("write"), send=True)
            sock.sendall(data)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: the kernel's
            raise httpx.WriteTimeout("timed out") from None
        except OSError as exc:
            raise broken(exc, conn.reused, httpx.WriteError) from exc
        read = timeouts.get("read")
        answer = Answer()
        # --timeout bounds the wait for a whole head, then each gap between
        # body bytes: bytes that are not body (a trailer that never ends, say)
        # do not restart the clock.
        clock = _Deadline(read)
        progress = 0
        fresh = True  # the clock has just (re)started: all of `read` is left
        try:
            while not answer.complete:
                conn.bounds.arm(read if fresh else clock.remaining())
                fresh = False
                chunk = sock.recv(RECV_SIZE)
                if not chunk:
                    if conn.reused and not answer.received:
                        raise Stale
                    answer.eof()
                    break
                answer.feed(chunk)
                if answer.progress > progress:
                    progress = answer.progress
                    clock.restart()
                    fresh = True
        except (TimeoutError, BlockingIOError):
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            reused = conn.reused and not answer.received
            raise broken(exc, reused, httpx.ReadError) from exc
        return answer

    def _connect(self, key: Origin, timeout: float | None) -> _Conn:
        # One deadline for the lookup, every address tried and the TLS
        # handshake, as asyncio's twin has (socket.create_connection would
        # give each address the whole timeout, and the lookup none).
        clock = _Deadline(timeout)
        scheme, host, port = key
        with connect_errors():
            sock = _open_socket(self._lookup((host, port)).addresses(clock), clock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._handshake(sock, host, port, clock)
        return _Conn(sock, key)

    def _handshake(
        self, sock: socket.socket, host: str, port: int, clock: _Deadline
    ) -> ssl.SSLSocket:
        tls: ssl.SSLSocket | None = None
        try:
            with self._lock:
                if self._context is None:  # the CA store is loaded only if needed
                    self._context = lean_context(self._verify)
                context = self._context
            tls = context.wrap_socket(
                sock,
                server_hostname=host,
                do_handshake_on_connect=False,
                session=self._sessions.get(host, port),
            )
            tls.settimeout(clock.remaining())
            tls.do_handshake()
        except BaseException:
            # wrap_socket takes the descriptor over: closing `sock` then would
            # leave the SSLSocket open until the collector found it.
            (sock if tls is None else tls).close()
            raise
        return tls

    def _lookup(self, key: tuple[str, int]) -> _Lookup:
        # Each host is looked up once per run, as in asyncio; a failed lookup
        # is forgotten, so a retry asks again.
        with self._lock:
            lookup = self._lookups.get(key)
            if lookup is None or lookup.failed:
                lookup = self._lookups[key] = _Lookup(key)
            return lookup

    def _checkout(self, key: Origin) -> _Conn | None:
        # A list's pop and append are atomic: no lock for the free list.
        idle = self._idle.get(key)
        while idle:
            try:
                conn = idle.pop()
            except IndexError:  # another thread took the last one
                return None
            if conn.idle_and_open():
                return conn
            conn.close()
        return None

    def _release(self, conn: _Conn, *, reuse: bool) -> None:
        sock = conn.sock
        # Bytes decrypted past the answer: the server sent more than it was asked.
        reuse = reuse and not (isinstance(sock, ssl.SSLSocket) and sock.pending())
        if not conn.reused and isinstance(sock, ssl.SSLSocket):
            # A new connection's first answer is in, and a TLS 1.3 ticket with it.
            self._sessions.keep(conn.key[1], conn.key[2], sock)
        if reuse and not self._closed:
            conn.reused = True
            idle = self._idle.get(conn.key)
            if idle is None:
                idle = self._idle.setdefault(conn.key, [])
            idle.append(conn)
            if not self._closed:
                return
            with contextlib.suppress(ValueError):  # close() may have taken it
                idle.remove(conn)
        conn.close()

    def _https(self) -> httpx.Client:
        with self._lock:
            if self._fallback is None:
                options = fallback_options(self._verify, self._limits)
                self._fallback = httpx.Client(**options)
            return self._fallback

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
            fallback, self._fallback = self._fallback, None
        for conn in idle:
            conn.close()
        if fallback is not None:
            fallback.close()


_Address = tuple[Any, Any, int, str, Any]  # one entry of getaddrinfo's list


def _open_socket(addresses: list[_Address], clock: _Deadline) -> socket.socket:
    """A socket connected to the first address that answers before `clock` ends."""
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = _new_socket(family, kind, proto, clock)
        timeout = clock.remaining()  # TimeoutError once the deadline has passed
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc  # a timeout too: the next address, if time is left
            continue
        return sock
    # The last error, as socket.create_connection gives.
    raise error or OSError("getaddrinfo returned no address")


def _new_socket(family: int, kind: int, proto: int, clock: _Deadline) -> socket.socket:
    """A new socket; out of descriptors, a wait within the connect timeout.

    EMFILE or ENFILE means other requests hold every descriptor for now, and
    one gives its own back as it ends: so it is never that flag's error,
    only a wait (the connect timeout still bounds it).
    """
    while True:
        try:
            return socket.socket(family, kind, proto)
        except OSError as exc:
            if not portable.out_of_descriptors(exc):
                raise
            left = clock.remaining()  # TimeoutError once the deadline has passed
            wait = portable.DESCRIPTOR_WAIT
            time.sleep(wait if left is None else min(wait, left))


class _Lookup:
    """One name lookup, in a daemon thread that a timed-out caller leaves behind.

    ``getaddrinfo`` cannot be interrupted; waiting for it in another thread
    lets the connect timeout bound it, as asyncio's ``loop.getaddrinfo`` does.
    """

    __slots__ = ("_done", "_error", "_result")

    def __init__(self, key: tuple[str, int]) -> None:
        self._done = threading.Event()
        self._result: list[_Address] = []
        self._error: OSError | UnicodeError | None = None
        threading.Thread(
            target=self._run, args=key, name="flags2-lookup", daemon=True
        ).start()

    def _run(self, host: str, port: int) -> None:
        try:
            self._result = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            self._error = exc
        finally:
            self._done.set()

    @property
    def failed(self) -> bool:
        return self._done.is_set() and self._error is not None

    def addresses(self, clock: _Deadline) -> list[_Address]:
        if not self._done.is_set() and not self._done.wait(clock.remaining()):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._result


class _Deadline:
    """A timeout for a whole stretch of reads, restarted only on progress."""

    __slots__ = ("_at", "_timeout")

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._at = 0.0
        self.restart()

    def restart(self) -> None:
        if self._timeout is not None:
            self._at = time.monotonic() + self._timeout

    def remaining(self) -> float | None:
        if self._timeout is None:
            return None
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


# -- the pools of leases -------------------------------------------------------


class ClientPool:
    """Blocking clients for the sequential and thread-pool modes."""

    def __init__(self, settings: Settings, alpn: str | None = None) -> None:
        plan = ClientPlan.for_run(settings, alpn)
        self._leases: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
        self._clients: list[httpx.Client] = []
        transport = PlainHTTPTransport(**plan.lean_options()) if plan.lean else None
        # One event-loop thread carries every client's HTTP/2 (flags2.h2transport).
        self._loop: PrivateLoop | None = None
        if plan.http2:
            from flags2.h2transport import PrivateLoop

            self._loop = PrivateLoop()
        for size in plan.sizes:
            client = httpx.Client(**plan.client_options(size, transport, self._loop))
            self._clients.append(client)
            for _ in range(size):
                self._leases.put(client)

    @contextmanager
    def lease(self) -> Iterator[httpx.Client]:
        client = self._leases.get()
        try:
            yield client
        finally:
            self._leases.put(client)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            client.close()
        if self._loop is not None:
            self._loop.close()
