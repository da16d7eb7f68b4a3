"""The asyncio twins of :mod:`flags2.clients`: a lean transport and the pool of leases.

A module of its own so that the blocking modes never import asyncio (about
20 ms of start-up). The framing is shared with the blocking transport
(:mod:`flags2.http11`), and so is the plan of the run's clients.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, SupportsIndex

import httpx2 as httpx

from flags2.clients import ClientPlan
from flags2.http11 import (
    CHUNK,
    IDEMPOTENT,
    MAX_LINE,
    Head,
    Stale,
    broken,
    chunk_size,
    head_line,
    incomplete,
    request_head,
    request_timeouts,
    response_extensions,
)
from flags2.settings import Settings

__all__ = ["AsyncClientPool", "AsyncPlainHTTPTransport"]


class _Reader(asyncio.StreamReader):
    """A StreamReader that notices bytes arriving while its connection is idle."""

    idle = False
    dirty = False

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self.idle:
            self.dirty = True  # a late 408 or garbage: never read it as an answer
        super().feed_data(data)


class _AsyncConn:
    __slots__ = ("key", "reader", "writer")

    def __init__(
        self,
        reader: _Reader,
        writer: asyncio.StreamWriter,
        key: tuple[str, int],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.key = key

    async def readline(self) -> bytes:
        try:
            return await self.reader.readline()
        except ValueError:  # longer than the reader's limit
            raise httpx.RemoteProtocolError("line too long in the response") from None

    def idle_and_open(self) -> bool:
        reader = self.reader
        return not (reader.dirty or reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(
        self,
        transport: AsyncPlainHTTPTransport,
        conn: _AsyncConn,
        head: Head,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._head = head
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = self._head
        if head.chunked:
            async for data in self._chunks():
                yield data
        elif head.length is not None:
            remaining = head.length
            while remaining:
                data = await self._read(min(remaining, CHUNK))
                if not data:
                    raise incomplete(head.length - remaining, head.length)
                remaining -= len(data)
                yield data
        else:
            while data := await self._read(CHUNK):
                yield data
        self._done = True

    async def _read(self, size: int, *, exactly: bool = False) -> bytes:
        reader = self._conn.reader
        try:
            async with asyncio.timeout(self._timeout):
                if exactly:
                    return await reader.readexactly(size)
                return await reader.read(size)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except asyncio.IncompleteReadError as exc:
            raise incomplete(len(exc.partial), None) from None
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc

    async def _line(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._conn.readline()
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc

    async def _chunks(self) -> AsyncIterator[bytes]:
        while size := chunk_size(await self._line()):
            yield await self._read(size, exactly=True)
            if await self._line() not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("malformed chunk end")
        while (line := await self._line()) not in (b"\r\n", b"\n"):
            if not line:
                raise incomplete(0, None)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._transport._release(conn, reuse=self._done and self._head.keep_alive)


class AsyncPlainHTTPTransport(httpx.AsyncBaseTransport):
    """:class:`PlainHTTPTransport` for one event loop (create it inside it)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._fallback: httpx.AsyncHTTPTransport | None = None
        self._idle: dict[tuple[str, int], list[_AsyncConn]] = {}
        self._open: set[_AsyncConn] = set()
        # Each host is looked up once per run, not once per connection.
        self._addresses: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http" or "Transfer-Encoding" in request.headers:
            return await self._https().handle_async_request(request)
        key = (url.host, url.port or 80)
        timeouts = request_timeouts(request)
        data = request_head(request)
        if "Content-Length" in request.headers:
            data += await request.aread()
        method = request.method.encode("ascii")
        while True:
            conn = self._checkout(key)
            reused = conn is not None and method in IDEMPOTENT
            if conn is None:
                conn = await self._connect(key, timeouts.get("connect"))
            try:
                head = await self._exchange(conn, data, method, timeouts, reused)
            except Stale:
                self._discard(conn)
                continue
            except BaseException:
                self._discard(conn)
                raise
            return httpx.Response(
                head.status,
                headers=head.headers,
                stream=_AsyncBody(self, conn, head, timeouts.get("read")),
                extensions=response_extensions(head),
            )

    async def _exchange(
        self,
        conn: _AsyncConn,
        data: bytes,
        method: bytes,
        timeouts: dict[str, float | None],
        reused: bool,
    ) -> Head:
        writer = conn.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out") from None
        except OSError as exc:
            raise broken(exc, reused, httpx.WriteError) from exc
        read = timeouts.get("read")
        lines: list[bytes] = []
        try:
            while True:
                # The status line may wait for the server to think: a read
                # timeout of its own. The rest of a head comes with it or
                # right after: one more timeout for all of its lines, not one
                # per line (a timer per header line was a sixth of this mode's
                # CPU at -a). A 1xx answer is followed by the real one, which
                # gets timers of its own.
                async with asyncio.timeout(read):
                    line = await conn.readline()
                if not line and reused:
                    raise Stale
                reused = False
                async with asyncio.timeout(read):
                    while (head := head_line(lines, line, method)) is None and lines:
                        line = await conn.readline()
                if head is not None:
                    return head
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            raise broken(exc, reused, httpx.ReadError) from exc

    async def _connect(self, key: tuple[str, int], timeout: float | None) -> _AsyncConn:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._open_connection(key)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        conn = _AsyncConn(reader, writer, key)
        self._open.add(conn)
        return conn

    async def _open_connection(
        self, key: tuple[str, int]
    ) -> tuple[_Reader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        addresses = await self._resolve(loop, key)
        error: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                error = exc
                continue
            # asyncio.open_connection, with our reader; asyncio sets TCP_NODELAY.
            reader = _Reader(limit=MAX_LINE, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.create_connection(
                lambda: protocol,  # noqa: B023 - used at once, inside this iteration
                sock=sock,
            )
            return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
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

    def _checkout(self, key: tuple[str, int]) -> _AsyncConn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_and_open():
                conn.reader.idle = False
                return conn
            self._discard(conn)
        return None

    def _release(self, conn: _AsyncConn, *, reuse: bool) -> None:
        if reuse and not self._closed:
            conn.reader.idle = True
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _AsyncConn) -> None:
        self._open.discard(conn)
        conn.close()

    def _https(self) -> httpx.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx.AsyncHTTPTransport(
                verify=self._verify, limits=self._limits
            )
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
