"""HTTP/2 over https, for blocking and async clients: h2's streams on our sockets.

Each GET over https is a stream of :class:`flags2.h2conn.H2Protocol`, h2's
state machine in an asyncio Protocol; a client keeps one connection per
origin. httpx2's own ``AsyncHTTPTransport(http2=True)`` carried them before:
its per-stream anyio cancel scopes, locks and byte-stream iterators cost as
much CPU as h2 itself (py-spy), and ``-e -m 1000`` took about twice its
plain-http time. It still carries what is not a plain GET over https.

An async client awaits the transport on its own loop. A blocking client
(sequential and thread-pool modes) hands each request to a private
event-loop thread: an h2 state machine shared among threads would need a
lock around each stream's id and its headers (httpcore's blocking HTTP/2 had
none, and at ``-m 30`` nginx saw streams out of order and ended connections
with PROTOCOL_ERROR). On one loop every frame is written in order, and the
threads still wait as the book's threads do, each for its own flag.

A blocking run's clients share one :class:`PrivateLoop`: all the HTTP/2 work
is then in one thread, as in the asyncio mode, instead of one loop thread per
client contending with the others (and with the run's threads) for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from concurrent import futures
from typing import Any

import httpx2 as httpx

from flags2.clientplan import Origin, lean_request, origin
from flags2.h2conn import H2Protocol, Refused
from flags2.http11 import Stale, request_timeouts
from flags2.tls import TLSLayer, connect_errors

__all__ = ["HTTP2Transport", "PrivateLoop"]


class PrivateLoop:
    """An event loop in a daemon thread of its own, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop; RuntimeError once it is closed."""
        loop = self._loop
        if loop is not None:  # the common case takes no lock
            return loop
        with self._lock:
            if self._closed:
                raise RuntimeError("the private loop is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="flags2-http2", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def started(self) -> asyncio.AbstractEventLoop | None:
        """The loop if it ever started, else None (nothing to clean up)."""
        return self._loop

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            # Still running (a callback stuck past the 5 s): closing it would
            # raise; the daemon thread ends with the process instead.
            loop.close()


class HTTP2Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """One client's HTTP/2 transport: a connection per origin, its streams h2's.

    A GET over https goes as a stream of :class:`flags2.h2conn.H2Protocol`;
    anything else (plain http after a redirect, a request with a body) goes
    through httpx's own ``AsyncHTTPTransport(http2=True)``, made only then.
    One connection carries all of a client's streams (the plan gives a client
    at most ``STREAMS_PER_CONNECTION``); a new one is made when it ends or
    says GOAWAY. A blocking client runs it on `private_loop` (shared with the
    run's other clients, closed by whoever made it), or on a loop of its own.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable
        private_loop: PrivateLoop | None = None,
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._context: ssl.SSLContext | None = None
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._current: dict[Origin, H2Protocol] = {}
        self._connecting: dict[Origin, asyncio.Future[H2Protocol]] = {}
        self._open: set[H2Protocol] = set()
        self._private = private_loop or PrivateLoop()
        self._owns_loop = private_loop is None
        self._lock = threading.Lock()
        self._pending: set[futures.Future[httpx.Response]] = set()
        self._inbox: list[tuple[httpx.Request, futures.Future[httpx.Response]]] = []
        self._woken = False  # the loop is due to take the inbox
        self._closed = False

    def _inner(self) -> httpx.AsyncHTTPTransport:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(
                verify=self._verify, limits=self._limits, http2=True
            )
        return self._transport

    # -- async clients: on the caller's loop ------------------------------------

    async def handle_async_request(
        self, request: httpx.Request, refused: int = 0, fruitless: int = 0
    ) -> httpx.Response:
        """The answer; `refused` and `fruitless` count the tries made before
        (a blocking request's first went straight to a connection)."""
        if request.url.scheme != "https" or not lean_request(request, tls=True):
            return await self._inner().handle_async_request(request)
        key = origin(request.url)
        timeouts = request_timeouts(request)
        while True:
            conn = await self._connection(key, timeouts.get("connect"))
            try:
                return await conn.request(request, timeouts.get("read"))
            except Refused:  # not seen: again, on this connection or a new one
                refused += 1
                if refused == _TRIES:
                    raise httpx.RemoteProtocolError(
                        f"the server refused this request {_TRIES} times"
                    ) from None
            except Stale:  # not answered on a connection now gone: a new one
                fruitless += not conn.answered
                if fruitless == _TRIES:
                    raise httpx.RemoteProtocolError(
                        f"the server turned this request away on {_TRIES} connections"
                    ) from None

    async def _connection(self, key: Origin, timeout: float | None) -> H2Protocol:
        conn = self._current.get(key)
        if conn is not None and conn.usable:
            return conn
        if self._closed:
            raise httpx.ConnectError("the client is closed")
        making = self._making(key, timeout)
        try:
            return await asyncio.shield(making)
        except httpx.TransportError as exc:
            # Each waiter its own error: httpx sets the request on it.
            raise type(exc)(str(exc)) from exc
        except asyncio.CancelledError:
            if making.cancelled() and self._closed:  # by aclose, not this task
                raise httpx.ConnectError("the client is closed") from None
            raise

    def _making(self, key: Origin, timeout: float | None) -> asyncio.Future[H2Protocol]:
        """`key`'s connection being made: one for all the streams that want
        one now (on this loop)."""
        making = self._connecting.get(key)
        if making is None:
            made = asyncio.ensure_future(self._connect(key, timeout))
            self._connecting[key] = making = made

            def done(made: asyncio.Future[H2Protocol]) -> None:
                if self._connecting.get(key) is made:
                    del self._connecting[key]
                if not made.cancelled():
                    made.exception()  # retrieved: it is each waiter's error too

            made.add_done_callback(done)
        return making

    async def _connect(self, key: Origin, timeout: float | None) -> H2Protocol:
        loop = asyncio.get_running_loop()
        _, host, port = key
        if self._context is None:
            self._context = httpx.create_ssl_context(self._verify)
            self._context.set_alpn_protocols(_ALPN)
        context = self._context
        self._open = {conn for conn in self._open if conn.usable}
        conn: H2Protocol | None = None
        try:
            # One deadline for the lookup, every address and the TLS handshake.
            with connect_errors():
                async with asyncio.timeout(timeout):
                    _, conn = await loop.create_connection(
                        lambda: H2Protocol(loop, TLSLayer(context, host)), host, port
                    )
                    self._open.add(conn)
                    await conn.handshake()
            if self._closed:  # the client closed while it was made
                raise httpx.ConnectError("the client is closed")
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._current[key] = conn
        return conn

    async def aclose(self) -> None:
        self._closed = True
        for making in list(self._connecting.values()):
            making.cancel()
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._current.clear()
        if self._transport is not None:
            await self._transport.aclose()

    # -- blocking clients: on the private loop ----------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """The answer, waited for in this thread while the private loop fetches it.

        Threads leave their requests in an inbox; the loop takes all that are
        there in one turn (one wake-up for a burst, not one each), and sends
        each as a stream at once when its connection has a free slot. Only
        the rest (no connection yet, a full one, anything not a lean GET) go
        as a task of :meth:`handle_async_request`.

        A request still in flight when the client closes (a run stopping early)
        is cancelled and ends as a ReadError: a thread must never wait on a loop
        that has stopped, or the interpreter's exit waits on that thread. The
        lock is held only around the inbox and the set of pending requests.
        """
        if self._closed:
            raise httpx.ConnectError("the client is closed", request=request)
        future: futures.Future[httpx.Response] = futures.Future()
        with self._lock:
            closed = self._closed
            if not closed:
                self._pending.add(future)
                self._inbox.append((request, future))
                wake, self._woken = not self._woken, True
        if closed:
            raise httpx.ConnectError("the client is closed", request=request)
        if wake:
            try:
                self._private.get().call_soon_threadsafe(self._take)
            except RuntimeError:  # the loop closed meanwhile
                future.cancel()
        try:
            return future.result()
        except futures.CancelledError:
            raise httpx.ReadError(
                "the client closed with this request in flight", request=request
            ) from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def _take(self) -> None:
        """On the loop: every request the threads have left, sent or started."""
        with self._lock:
            inbox, self._inbox = self._inbox, []
            self._woken = False
        for request, future in inbox:
            self._dispatch(request, future)

    def _dispatch(
        self,
        request: httpx.Request,
        future: futures.Future[httpx.Response],
        *,
        park: bool = True,
    ) -> None:
        """A stream now if its connection has a slot; else a task, or (`park`)
        a wait with the others for the connection being made."""
        if future.done():  # cancelled: the client closed
            return
        if request.url.scheme != "https" or not lean_request(request, tls=True):
            self._start(request, future, self._whole(request))
            return
        key = origin(request.url)
        conn = self._current.get(key)
        if conn is not None and conn.free:
            timeout = request_timeouts(request).get("read")
            conn.send(request, timeout, _Answer(self, request, future, conn))
        elif not park or (conn is not None and conn.usable):
            # A full connection's slot, or one that ended as soon as it was
            # made: the task's tries count that (_TRIES), never a loop here.
            self._start(request, future, self._whole(request))
        else:  # it waits with the others for the connection being made
            making = self._making(key, request_timeouts(request).get("connect"))

            def made(making: asyncio.Future[H2Protocol]) -> None:
                if making.cancelled():  # the client closed
                    future.cancel()
                elif (exc := making.exception()) is not None:
                    _settle(future, _own(exc))
                else:
                    self._dispatch(request, future, park=False)

            making.add_done_callback(made)

    def _start(
        self,
        request: httpx.Request,
        future: futures.Future[httpx.Response],
        fetch: Coroutine[Any, Any, httpx.Response],
    ) -> None:
        """`fetch` as a task whose end is `future`'s; cancelling `future` cancels it."""
        loop = self._private.get()
        # Kept alive by `cancelled`, which `future` holds (its thread waits on
        # it): the loop holds tasks only weakly.
        task = loop.create_task(fetch)

        def done(task: asyncio.Task[httpx.Response]) -> None:
            if task.cancelled():
                future.cancel()
            elif (exc := task.exception()) is not None:
                _settle(future, exc)
            else:
                _settle(future, task.result())

        def cancelled(future: futures.Future[httpx.Response]) -> None:
            if future.cancelled():
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(task.cancel)

        task.add_done_callback(done)
        future.add_done_callback(cancelled)

    async def _whole(
        self, request: httpx.Request, refused: int = 0, fruitless: int = 0
    ) -> httpx.Response:
        """The answer read whole (a flag is small), to hand to another thread."""
        response = await self.handle_async_request(request, refused, fruitless)
        if isinstance(response.stream, httpx.ByteStream):
            return response  # a stream's answer is whole already
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:  # their threads get a ReadError at once
            future.cancel()
        loop = self._private.started()
        if loop is not None:
            # Closing: whatever the connections say, they go with the loop.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(5)
        if self._owns_loop:
            self._private.close()


class _Answer:
    """A blocking request's stream end: its answer, or a retry as a task."""

    __slots__ = ("conn", "future", "request", "transport")

    def __init__(
        self,
        transport: HTTP2Transport,
        request: httpx.Request,
        future: futures.Future[httpx.Response],
        conn: H2Protocol,
    ) -> None:
        self.transport = transport
        self.request = request
        self.future = future
        self.conn = conn

    def __call__(self, outcome: httpx.Response | BaseException) -> None:
        if isinstance(outcome, Refused):
            again = self.transport._whole(self.request, refused=1)
        elif isinstance(outcome, Stale):
            again = self.transport._whole(
                self.request, fruitless=int(not self.conn.answered)
            )
        else:
            _settle(self.future, _own(outcome))
            return
        self.transport._start(self.request, self.future, again)


def _own(outcome: Any) -> Any:
    """A connection's error is told to each of its streams: each thread
    raises its own copy (httpx sets the request on it), the first its cause."""
    if not isinstance(outcome, httpx.TransportError):
        return outcome
    own = type(outcome)(str(outcome))
    own.__cause__ = outcome
    return own


def _settle(
    future: futures.Future[httpx.Response], outcome: httpx.Response | BaseException
) -> None:
    """`future`'s outcome, unless close() cancelled it meanwhile."""
    if future.done():
        return
    with contextlib.suppress(futures.InvalidStateError):  # cancelled just now
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


_ALPN = ["h2", "http/1.1"]  # offered as httpcore does; only h2 is taken
_TRIES = 3  # refusals, or connections that answered nothing, before giving up
