"""HTTP clients sized to the run, lent out one connection slot at a time.

One run shares its clients among all its requests. A *lease* is one slot:
there are exactly as many leases as concurrent requests, so no request ever
waits for a pool slot, and the lease queue is also the book's semaphore::

    with ClientPool(settings) as pool:
        with pool.lease() as client:
            client.get(url)

For a plain ``http://`` server (the bundled ones, a local nginx) the run has a
single client whose transport is :class:`PlainHTTPTransport` (or its async
twin): HTTP/1.1 on keep-alive sockets, with a free list of idle connections
instead of a pool that is scanned on every request. httpx's own pool checks
every connection it holds each time it assigns one, and its async path adds
anyio's cancel scopes to each read and write: at ``-e -m 1000`` that is about
1 ms of CPU per request before the request is even sent, and the last of 676
requests left 0.7 s after the first. The lean transport plugs into httpx
through its public transport API, so redirects, cookies, decoding, timeouts and
httpx's exception classes are unchanged; ``https://`` requests (a server or a
redirect) go to httpx's own transport.

For ``https://`` servers, or when the environment names a proxy, the run uses
httpx's own transport, split over several clients of at most
``CONNECTIONS_PER_CLIENT`` connections (one pool of 1000 spends more time
scanning itself than waiting on the network).
"""

from __future__ import annotations

import asyncio
import queue
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, SupportsIndex
from urllib.request import getproxies

import httpx2 as httpx

from flags2.settings import Settings

__all__ = [
    "CONNECTIONS_PER_CLIENT",
    "AsyncClientPool",
    "AsyncPlainHTTPTransport",
    "ClientPool",
    "PlainHTTPTransport",
    "split_slots",
]

CONNECTIONS_PER_CLIENT = 32

_MAX_LINE = 65536  # longest status or header line accepted
_MAX_HEADERS = 200
_CHUNK = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_HEX = frozenset(b"0123456789abcdefABCDEF")
# A stale keep-alive connection is retried on a fresh one only for methods
# that are safe to send twice.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_TOKEN = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def split_slots(
    concurrency: int, per_client: int = CONNECTIONS_PER_CLIENT
) -> list[int]:
    """Pool sizes, as even as possible, that add up to `concurrency`."""
    n_clients = max(1, -(-concurrency // per_client))
    size, extra = divmod(concurrency, n_clients)
    return [size + (i < extra) for i in range(n_clients)]


def _limits(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


def _timeout(settings: Settings) -> httpx.Timeout:
    # Leases guarantee a free slot, so a wait for one would be a bug: no limit.
    return httpx.Timeout(settings.timeout, pool=None)


def _lean(base_url: str) -> bool:
    """True when the run can use the lean plain-http transport."""
    if not base_url.lower().startswith("http:"):
        return False
    # httpx honours HTTP_PROXY and friends; the lean transport does not.
    proxies = getproxies()
    return "http" not in proxies and "all" not in proxies


# -- HTTP/1.1, the few parts a GET needs --------------------------------------


class _Head:
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


def _head_line(lines: list[bytes], line: bytes, method: bytes) -> _Head | None:
    """Take one line of a response head; return the head once it is complete.

    Both transports read lines their own way and hand them here. An interim
    (1xx) head is dropped and `lines` starts over for the answer that follows.
    """
    if not line:
        raise _disconnected()
    if lines and line in (b"\r\n", b"\n"):
        head = _Head(lines, method)
        lines.clear()
        return None if head.interim else head
    if len(lines) > _MAX_HEADERS:
        raise httpx.RemoteProtocolError("too many response headers")
    lines.append(line.rstrip(b"\r\n"))
    return None


def _request_head(request: httpx.Request) -> bytes:
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


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16 or not _HEX.issuperset(size):
        raise httpx.RemoteProtocolError(f"malformed chunk size: {line!r}")
    return int(size, 16)


def _incomplete(received: int, expected: int | None) -> httpx.RemoteProtocolError:
    wanted = f", expected {expected}" if expected is not None else ""
    return httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body:"
        f" received {received} bytes{wanted}"
    )


def _disconnected() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def _extensions(head: _Head) -> dict[str, Any]:
    return {"http_version": head.version, "reason_phrase": head.reason}


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts


class _Stale(Exception):
    """A reused connection closed before answering: try a fresh one."""


# -- blocking ------------------------------------------------------------------


class _Conn:
    __slots__ = ("file", "key", "sock")

    def __init__(self, sock: socket.socket, key: tuple[str, int]) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.key = key

    def readline(self) -> bytes:
        line = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise httpx.RemoteProtocolError("line too long in the response")
        return line

    def idle_and_open(self) -> bool:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if poller.poll(0):
            return False  # readable while idle: closed, or garbage
        # Bytes the buffer already holds are not seen by poll: a stray 408, say.
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            return not self.file.peek(1)
        except OSError:
            return False
        finally:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, transport: PlainHTTPTransport, conn: _Conn, head: _Head) -> None:
        self._transport = transport
        self._conn = conn
        self._head = head
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        conn, head = self._conn, self._head
        try:
            if head.chunked:
                yield from self._chunks()
            elif head.length is not None:
                remaining = head.length
                while remaining:
                    data = conn.file.read1(min(remaining, _CHUNK))
                    if not data:
                        raise _incomplete(head.length - remaining, head.length)
                    remaining -= len(data)
                    yield data
            else:
                while data := conn.file.read1(_CHUNK):
                    yield data
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        self._done = True

    def _chunks(self) -> Iterator[bytes]:
        conn, received = self._conn, 0
        while size := _chunk_size(conn.readline()):
            data = conn.file.read(size)
            received += len(data)
            if len(data) < size:
                raise _incomplete(received, None)
            yield data
            if conn.readline() not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("malformed chunk end")
        while (line := conn.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise _incomplete(received, None)

    def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._transport._release(conn, reuse=self._done and self._head.keep_alive)


class PlainHTTPTransport(httpx.BaseTransport):
    """Blocking HTTP/1.1 over keep-alive sockets; https goes to httpx's transport.

    Thread-safe; it never holds more idle connections than were ever in use
    at once, and opens a new one whenever none is idle.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._fallback: httpx.HTTPTransport | None = None
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http" or "Transfer-Encoding" in request.headers:
            return self._https().handle_request(request)
        key = (url.host, url.port or 80)
        timeouts = _timeouts(request)
        data = _request_head(request)
        if "Content-Length" in request.headers:
            data += request.read()
        method = request.method.encode("ascii")
        while True:
            conn = self._checkout(key)
            reused = conn is not None and method in _IDEMPOTENT
            if conn is None:
                conn = self._connect(key, timeouts.get("connect"))
            try:
                head = self._exchange(conn, data, method, timeouts, reused)
            except _Stale:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
            return httpx.Response(
                head.status,
                headers=head.headers,
                stream=_Body(self, conn, head),
                extensions=_extensions(head),
            )

    def _exchange(
        self,
        conn: _Conn,
        data: bytes,
        method: bytes,
        timeouts: dict[str, float | None],
        reused: bool,
    ) -> _Head:
        sock = conn.sock
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(data)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out") from None
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise httpx.WriteError(str(exc)) from exc
        try:
            sock.settimeout(timeouts.get("read"))
            line = conn.readline()
            if not line and reused:
                raise _Stale
            reused = False  # the server did answer: no second try now
            lines: list[bytes] = []
            while (head := _head_line(lines, line, method)) is None:
                line = conn.readline()
            return head
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise httpx.ReadError(str(exc)) from exc

    def _connect(self, key: tuple[str, int], timeout: float | None) -> _Conn:
        try:
            sock = socket.create_connection(key, timeout=timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(sock, key)

    def _checkout(self, key: tuple[str, int]) -> _Conn | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.idle_and_open():
                    return conn
                conn.close()
        return None

    def _release(self, conn: _Conn, *, reuse: bool) -> None:
        with self._lock:
            if reuse and not self._closed:
                self._idle.setdefault(conn.key, []).append(conn)
                return
        conn.close()

    def _https(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._fallback is None:
                self._fallback = httpx.HTTPTransport(
                    verify=self._verify, limits=self._limits
                )
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


# -- async ---------------------------------------------------------------------


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
        head: _Head,
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
                data = await self._read(min(remaining, _CHUNK))
                if not data:
                    raise _incomplete(head.length - remaining, head.length)
                remaining -= len(data)
                yield data
        else:
            while data := await self._read(_CHUNK):
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
            raise _incomplete(len(exc.partial), None) from None
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
        while size := _chunk_size(await self._line()):
            yield await self._read(size, exactly=True)
            if await self._line() not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("malformed chunk end")
        while (line := await self._line()) not in (b"\r\n", b"\n"):
            if not line:
                raise _incomplete(0, None)

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
        timeouts = _timeouts(request)
        data = _request_head(request)
        if "Content-Length" in request.headers:
            data += await request.aread()
        method = request.method.encode("ascii")
        while True:
            conn = self._checkout(key)
            reused = conn is not None and method in _IDEMPOTENT
            if conn is None:
                conn = await self._connect(key, timeouts.get("connect"))
            try:
                head = await self._exchange(conn, data, method, timeouts, reused)
            except _Stale:
                self._discard(conn)
                continue
            except BaseException:
                self._discard(conn)
                raise
            return httpx.Response(
                head.status,
                headers=head.headers,
                stream=_AsyncBody(self, conn, head, timeouts.get("read")),
                extensions=_extensions(head),
            )

    async def _exchange(
        self,
        conn: _AsyncConn,
        data: bytes,
        method: bytes,
        timeouts: dict[str, float | None],
        reused: bool,
    ) -> _Head:
        writer = conn.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out") from None
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise httpx.WriteError(str(exc)) from exc
        read = timeouts.get("read")

        async def readline() -> bytes:
            async with asyncio.timeout(read):  # per read, as httpx times them
                return await conn.readline()

        try:
            line = await readline()
            if not line and reused:
                raise _Stale
            reused = False
            lines: list[bytes] = []
            while (head := _head_line(lines, line, method)) is None:
                line = await readline()
            return head
        except TimeoutError:
            raise httpx.ReadTimeout("timed out") from None
        except OSError as exc:
            if reused:
                raise _Stale from exc
            raise httpx.ReadError(str(exc)) from exc

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
            reader = _Reader(limit=_MAX_LINE, loop=loop)
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


# -- the pools of leases -------------------------------------------------------


def _plan(settings: Settings) -> tuple[ssl.SSLContext | bool, list[int], bool]:
    """How the run verifies TLS, its clients' pool sizes, and whether they go lean.

    The lean transport has no pool to scan, so one client holds every slot, and
    it hands https (a redirect, say) to httpx's own transport, created only
    then: ``verify=True`` loads the CA store (~35 ms) only if it is needed.
    Without it, the run's clients share one context, loaded once.
    """
    if _lean(settings.base_url):
        return True, [settings.concurrency], True
    return httpx.create_ssl_context(), split_slots(settings.concurrency), False


class ClientPool:
    """Blocking clients for the sequential and thread-pool modes."""

    def __init__(self, settings: Settings) -> None:
        ctx, sizes, lean = _plan(settings)
        self._leases: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
        self._clients: list[httpx.Client] = []
        transport = (
            PlainHTTPTransport(verify=ctx, limits=_limits(sizes[0])) if lean else None
        )
        for size in sizes:
            client = httpx.Client(
                verify=ctx,
                limits=_limits(size),
                timeout=_timeout(settings),
                follow_redirects=True,
                transport=transport,
            )
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


class AsyncClientPool:
    """Async clients for the asyncio mode; create it inside the event loop."""

    def __init__(self, settings: Settings) -> None:
        ctx, sizes, lean = _plan(settings)
        self._leases: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._clients: list[httpx.AsyncClient] = []
        transport = (
            AsyncPlainHTTPTransport(verify=ctx, limits=_limits(sizes[0]))
            if lean
            else None
        )
        for size in sizes:
            client = httpx.AsyncClient(
                verify=ctx,
                limits=_limits(size),
                timeout=_timeout(settings),
                follow_redirects=True,
                transport=transport,
            )
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
