"""httpx's own HTTP/2 transport, for blocking and async clients alike.

An https run offers HTTP/2 through httpx's ``AsyncHTTPTransport(http2=True)``.
An async client awaits it on its own loop. A blocking client (sequential and
thread-pool modes) hands each request to one private event-loop thread that
runs the same transport: httpcore's blocking HTTP/2 shares one h2 state
machine among the threads of a connection without a lock around a stream's
id and its headers, so at ``-m 30`` nginx saw streams out of order and ended
connections (``ConnectionTerminated error_code:1``, PROTOCOL_ERROR). On one
loop every frame is written in order, and the threads still wait as the
book's threads do, each for its own flag.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any

import httpx2 as httpx

if TYPE_CHECKING:
    import asyncio

__all__ = ["HTTP2Transport"]


class HTTP2Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """One client's HTTP/2-capable transport; `options` go to AsyncHTTPTransport."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
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
        that has stopped, or the interpreter's exit waits on that thread.
        """
        import asyncio

        with self._lock:
            if self._closed:
                raise httpx.ConnectError("the client is closed", request=request)
            future = asyncio.run_coroutine_threadsafe(
                self._whole(request), self._start()
            )
            self._pending.add(future)
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

    def _start(self) -> asyncio.AbstractEventLoop:
        """The private loop, started on first use (the caller holds the lock)."""
        import asyncio

        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="flags2-http2", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    def close(self) -> None:
        import asyncio

        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            pending = list(self._pending)
        for future in pending:  # their threads get a ReadError at once
            future.cancel()
        if loop is None or thread is None:
            return
        # Closing: whatever the pool says, its sockets go with the loop.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
