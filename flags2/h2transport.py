"""httpx's own HTTP/2 transport, for blocking and async clients alike.

An https run offers HTTP/2 through httpx's ``AsyncHTTPTransport(http2=True)``.
An async client awaits it on its own loop. A blocking client (sequential and
thread-pool modes) hands each request to a private event-loop thread that
runs the same transport: httpcore's blocking HTTP/2 shares one h2 state
machine among the threads of a connection without a lock around a stream's
id and its headers, so at ``-m 30`` nginx saw streams out of order and ended
connections (``ConnectionTerminated error_code:1``, PROTOCOL_ERROR). On one
loop every frame is written in order, and the threads still wait as the
book's threads do, each for its own flag.

A blocking run's clients share one :class:`PrivateLoop`: all the HTTP/2 work
is then in one thread, as in the asyncio mode, instead of one loop thread per
client contending with the others (and with the run's threads) for the GIL.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any

import httpx2 as httpx

if TYPE_CHECKING:
    import asyncio

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
        import asyncio

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
    """One client's HTTP/2-capable transport; `options` go to AsyncHTTPTransport.

    A blocking client runs it on `private_loop` (shared with the run's other
    clients, closed by whoever made it), or on a loop of its own if none.
    """

    def __init__(self, *, private_loop: PrivateLoop | None = None, **options: Any):
        self._options = options
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._private = private_loop or PrivateLoop()
        self._owns_loop = private_loop is None
        self._lock = threading.Lock()
        self._pending: set[futures.Future[httpx.Response]] = set()
        self._closed = False

    def _inner(self) -> httpx.AsyncHTTPTransport:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(http2=True, **self._options)
        return self._transport

    # -- async clients: on the caller's loop ------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner().handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()

    # -- blocking clients: on the private loop ----------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """The answer, waited for in this thread while the private loop fetches it.

        A request still in flight when the client closes (a run stopping early)
        is cancelled and ends as a ReadError: a thread must never wait on a loop
        that has stopped, or the interpreter's exit waits on that thread. The
        lock is held only around the set of pending requests, never across the
        hand-off: at ``-m 1000`` threads queued on it.
        """
        import asyncio

        if self._closed:
            raise httpx.ConnectError("the client is closed", request=request)
        try:
            future = asyncio.run_coroutine_threadsafe(
                self._whole(request), self._private.get()
            )
        except RuntimeError:  # the loop closed meanwhile
            raise httpx.ConnectError("the client is closed", request=request) from None
        with self._lock:
            self._pending.add(future)
            closed = self._closed
        if closed:  # close() ran before the add: it could not cancel this one
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

    async def _whole(self, request: httpx.Request) -> httpx.Response:
        """The answer read whole (a flag is small), to hand to another thread."""
        response = await self._inner().handle_async_request(request)
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
        import asyncio

        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:  # their threads get a ReadError at once
            future.cancel()
        loop = self._private.started()
        if loop is not None and self._transport is not None:
            # Closing: whatever the pool says, its sockets go with the loop.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(5)
        if self._owns_loop:
            self._private.close()
