"""The asyncio twins of :mod:`flags2.clients`: a lean transport and the pool of leases.

A module of its own so that the blocking modes never import asyncio (a cost
at start-up). The framing is shared with the blocking transport
(:mod:`flags2.http11`), and so is the plan of the run's clients
(:mod:`flags2.clientplan`), and so is what the blocking one promises about
https (over TLS itself, unless a proxy is named for it: then an httpx client
of its own), host names (the IDNA 2008 A-label the Host header carries, and
the server name TLS checks) and the connect timeout (the lookup, every
address and the handshake, together). Its TLS is its own memory-BIO layer
(:class:`flags2.tls.TLSLayer`), not asyncio's ``ssl=`` transport.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import httpx2 as httpx

from flags2 import portable
from flags2.clientplan import (
    ClientPlan,
    Origin,
    fallback_options,
    lean_request,
    origin,
)
from flags2.http11 import Answer, Stale, request_head, request_timeouts
from flags2.settings import Settings
from flags2.tls import Sessions, TLSLayer, connect_errors, lean_context

__all__ = ["AsyncClientPool", "AsyncPlainHTTPTransport"]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``data_received`` feeds the answer's parser.

    The pattern uvicorn uses: no StreamReader between the socket and the
    parser, and one timer per connection (moved on, not replaced, as body
    bytes arrive and as exchanges follow each other). Bytes that arrive while
    the connection is idle (a late 408, a second answer) mark it dirty: it is
    never lent again. Over https the protocol is its own TLS layer
    (:class:`flags2.tls.TLSLayer`): records that carry no data (a session
    ticket) leave an idle connection clean, a close_notify ends it.
    """

    def __init__(
        self,
        key: Origin,
        loop: asyncio.AbstractEventLoop,
        tls: TLSLayer | None = None,
    ) -> None:
        self.key = key
        self._tls = tls
        self._handshaken: asyncio.Future[None] | None = (
            None if tls is None else loop.create_future()
        )
        self.reused = False
        self.dirty = False
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._answer: Answer | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timeout: float | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._progress = 0

    @property
    def tls_layer(self) -> TLSLayer | None:
        """The connection's TLS, None over plain http."""
        return self._tls

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._tls is not None:
            self._shake()

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        if tls is None:
            self._received(data)
            return
        tls.put(data)
        shaking = self._handshaken
        if shaking is not None and not shaking.done() and not self._shake():
            return  # not done yet (once done, data may follow in the same bytes)
        try:
            data = tls.plaintext()
        except ssl.SSLError as exc:
            self.close()
            self._ended(exc)
            return
        self._send(tls.outgoing())
        if data:
            self._received(data)
        if tls.ended:  # close_notify: the end, as a TCP EOF is
            self.close()
            self._ended(None)

    def _received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:
            self.dirty = True
            return
        try:
            answer.feed(data)
        except httpx.RemoteProtocolError as exc:
            self._settle(exc)
            return
        if answer.progress > self._progress and self._timeout is not None:
            self._progress = answer.progress
            self._deadline = self._loop.time() + self._timeout
        if answer.complete:
            self._settle(None)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.dirty = True
        self._ended(exc)

    # -- the TLS handshake -----------------------------------------------------

    async def handshake(self) -> None:
        """Wait for the TLS handshake (ssl.SSLError or OSError if it fails)."""
        if self._handshaken is not None:
            await self._handshaken

    def _shake(self) -> bool:
        assert self._tls is not None and self._handshaken is not None
        try:
            done = self._tls.handshake()
        except ssl.SSLError as exc:
            self._send(self._tls.outgoing())  # the alert says why to the server
            self._handshaken.set_exception(exc)
            self._handshaken.exception()  # retrieved: a timed-out caller never asks
            return False
        self._send(self._tls.outgoing())
        if done:
            self._handshaken.set_result(None)
        return done

    def _send(self, data: bytes) -> None:
        if data and self._transport is not None:
            self._transport.write(data)

    # -- one exchange ----------------------------------------------------------

    async def exchange(self, data: bytes, timeout: float | None) -> Answer:
        """Send a request head; return its whole answer."""
        assert self._transport is not None
        if self._tls is not None:
            try:
                data = self._tls.encrypt(data)
            except ssl.SSLError as exc:  # the TLS layer is broken: never lent again
                raise httpx.WriteError(str(exc)) from exc
        answer = self._answer = Answer()
        waiter = self._waiter = self._loop.create_future()
        self._timeout, self._progress = timeout, 0
        self._transport.write(data)
        if timeout is not None:
            # A whole head within --timeout, then each gap between body bytes.
            # A timer still armed from an earlier exchange fires before this
            # deadline and moves on to it: one timer per connection, not one
            # made and cancelled per exchange.
            self._deadline = self._loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > self._deadline:
                if timer is not None:
                    timer.cancel()  # a longer timeout before: too late for this
                self._timer = self._loop.call_at(self._deadline, self._on_timer)
        await waiter
        return answer

    def idle(self) -> None:
        """The answer is taken: any byte from now on is unasked for."""
        self._answer = None
        self._waiter = None

    def idle_and_open(self) -> bool:
        transport = self._transport
        return not self.dirty and transport is not None and not transport.is_closing()

    def close(self) -> None:
        self.dirty = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._timeout is None:
            return  # idle, or an exchange without a timeout: none is armed now
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._settle(httpx.ReadTimeout("timed out"))

    def _ended(self, exc: Exception | None) -> None:
        shaking = self._handshaken
        if shaking is not None and not shaking.done():
            shaking.set_exception(
                exc or ConnectionResetError("closed during the TLS handshake")
            )
            shaking.exception()  # retrieved: a timed-out caller never asks
        answer = self._answer
        if answer is None or self._waiter is None or self._waiter.done():
            return
        if self.reused and not answer.received:
            self._settle(Stale())
        elif exc is not None:
            self._settle(httpx.ReadError(str(exc)))
        else:
            try:
                answer.eof()
            except httpx.RemoteProtocolError as error:
                self._settle(error)
            else:
                self._settle(None)

    def _settle(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)


class AsyncPlainHTTPTransport(httpx.AsyncBaseTransport):
    """:class:`PlainHTTPTransport` for one event loop (create it inside it)."""

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
        self._fallback: httpx.AsyncClient | None = None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        # Each host is looked up once per run, not once per connection.
        self._addresses: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not lean_request(request, tls=self._tls):
            return await self._https().send(request, stream=True)
        key = origin(request.url)
        timeouts = request_timeouts(request)
        data = request_head(request)
        while True:
            conn = self._checkout(key)
            if conn is None:
                conn = await self._connect(key, timeouts.get("connect"))
            try:
                answer = await conn.exchange(data, timeouts.get("read"))
            except Stale:
                self._discard(conn)
                continue
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn, reuse=answer.reusable)
            return httpx.Response(
                answer.status,
                headers=answer.headers,
                stream=httpx.ByteStream(bytes(answer.body)),
                extensions=answer.extensions(conn if key[0] == "https" else None),
            )

    async def _connect(self, key: Origin, timeout: float | None) -> _Connection:
        # One deadline for the lookup, every address and the TLS handshake.
        with connect_errors():
            async with asyncio.timeout(timeout):
                conn = await self._open_connection(key)
        self._open.add(conn)
        return conn

    async def _open_connection(self, key: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, host, port = key
        if scheme == "https" and self._context is None:
            # The CA store, loaded only if needed, and before any connection: a
            # bad SSL_CERT_FILE is our error, not one to open a socket for.
            self._context = lean_context(self._verify)
        context = self._context if scheme == "https" else None
        addresses = await self._resolve(loop, (host, port))
        error: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = await _new_socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                error = exc
                continue
            try:
                tls = (
                    TLSLayer(context, host, self._sessions.get(host, port))
                    if context is not None
                    else None
                )
                # asyncio sets TCP_NODELAY on the transport.
                _, conn = await loop.create_connection(
                    functools.partial(_Connection, key, loop, tls), sock=sock
                )
            except BaseException:
                sock.close()
                raise
            try:
                await conn.handshake()  # within the caller's connect timeout
            except BaseException:
                conn.close()
                raise
            return conn
        # anyio's words, which httpx's own transport gave for the same failure.
        raise OSError("All connection attempts failed") from error

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, int]
    ) -> list[Any]:
        # One lookup per host for the whole run, in a task of its own: a caller
        # cancelled while waiting (its connect timeout) cancels only its wait.
        lookup = self._addresses.get(key)
        if lookup is None:
            lookup = self._addresses[key] = asyncio.ensure_future(
                loop.getaddrinfo(*key, type=socket.SOCK_STREAM)
            )

            def forget_failure(done: asyncio.Future[list[Any]]) -> None:
                if done.cancelled() or done.exception() is not None:
                    self._addresses.pop(key, None)

            lookup.add_done_callback(forget_failure)
        return await asyncio.shield(lookup)

    def _checkout(self, key: Origin) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_and_open():
                return conn
            self._discard(conn)
        return None

    def _release(self, conn: _Connection, *, reuse: bool) -> None:
        conn.idle()
        if not conn.reused and (layer := conn.tls_layer) is not None:
            # A new connection's first answer is in, and a TLS 1.3 ticket with it.
            self._sessions.keep(conn.key[1], conn.key[2], layer.tls)
        if reuse and not self._closed:
            conn.reused = True
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        conn.close()

    def _https(self) -> httpx.AsyncClient:
        if self._fallback is None:
            options = fallback_options(self._verify, self._limits)
            self._fallback = httpx.AsyncClient(**options)
        return self._fallback

    async def aclose(self) -> None:
        self._closed = True
        self._idle.clear()
        for conn in list(self._open):
            self._discard(conn)
        if self._fallback is not None:
            await self._fallback.aclose()


class AsyncClientPool:
    """Async clients for the asyncio mode; create it inside the event loop."""

    def __init__(self, settings: Settings) -> None:
        plan = ClientPlan.for_run(settings)
        self._leases: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._clients: list[httpx.AsyncClient] = []
        transport = (
            AsyncPlainHTTPTransport(**plan.lean_options()) if plan.lean else None
        )
        for size in plan.sizes:
            client = httpx.AsyncClient(**plan.client_options(size, transport))
            self._clients.append(client)
            for _ in range(size):
                self._leases.put_nowait(client)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        client = await self._leases.get()
        try:
            yield client
        finally:
            self._leases.put_nowait(client)

    async def __aenter__(self) -> AsyncClientPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._clients:
            await client.aclose()


async def _new_socket(family: int, kind: int, proto: int) -> socket.socket:
    """A new socket; out of descriptors (EMFILE, ENFILE), a wait, not an error.

    Other requests hold every descriptor for now and give theirs back as they
    end; the caller's connect timeout bounds the wait.
    """
    while True:
        try:
            return socket.socket(family, kind, proto)
        except OSError as exc:
            if not portable.out_of_descriptors(exc):
                raise
            await asyncio.sleep(portable.DESCRIPTOR_WAIT)
