"""One HTTP/2 connection: its streams multiplexed by ``h2``, in an asyncio Protocol.

The shape of httpcore's ``_async/http2.py`` (the framing, flow control and
header rules are h2's), without what a general pool needs and a flag does
not: no anyio cancel scopes, no lock per read, no stream object to iterate.
Each request is one stream whose whole answer is gathered as its frames
arrive in ``data_received``, as :mod:`flags2.aioclients` does for HTTP/1.1
(uvicorn's pattern). TLS is :class:`flags2.tls.TLSLayer`, memory BIOs.

Streams past the server's cap (``SETTINGS_MAX_CONCURRENT_STREAMS``; nginx
128, hypercorn 100) wait for one to end: a wait, never an error. A stream
refused (REFUSED_STREAM) raises :class:`Refused`, and one still unanswered
when a GOAWAY comes raises :class:`flags2.http11.Stale`: the transport sends
it again (RFC 9113, 8.7), on a new connection after a GOAWAY. h2 reads no
frame after a GOAWAY (python-hyper/h2#1181), so after a graceful one even
the streams the server did see go again: a GET may be sent twice (RFC 9110,
9.2.2). Any other end is httpx's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx2 as httpx
from hyperframe.frame import Frame, GoAwayFrame

from flags2.http11 import CONNECTION, MAX_BODY, Stale
from flags2.tls import TLSLayer

__all__ = ["H2Protocol", "Outcome", "Refused", "request_headers"]

_WINDOW = 2**24  # a stream's and the connection's receive window: no stalls
_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    # httpx has validated the request's headers; request_headers lowercases
    # them and drops what HTTP/2 forbids. What the server sends is checked.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
_SETTINGS = {
    h2.settings.SettingCodes.ENABLE_PUSH: 0,
    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
    h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
}
# RFC 9113, 8.2.2: connection-specific fields are not sent over HTTP/2.
_NOT_SENT = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"upgrade"}
    | {b"transfer-encoding", b"te"}
)
_VERSION = b"HTTP/2"
_HEADER = 9  # the bytes of a frame's header (RFC 9113, 4.1)


class Refused(Stale):
    """The server refused the stream (REFUSED_STREAM): it never saw it."""


def request_headers(request: httpx.Request) -> list[tuple[bytes, bytes]]:
    """The HEADERS of a GET: pseudo-headers first, then httpx's, lowercased."""
    url = request.url
    headers = [
        (b":method", request.method.encode("ascii")),
        (b":authority", url.netloc),
        (b":scheme", url.raw_scheme),
        (b":path", url.raw_path),
    ]
    for name, value in request.headers.raw:
        name = name.lower()
        if name not in _NOT_SENT:
            headers.append((name, value))
    return headers


Outcome = Callable[["httpx.Response | BaseException"], None]
"""Told a stream's end once: its whole answer, or why there is none."""


class _Stream:
    __slots__ = ("body", "deadline", "headers", "on_end", "status", "timeout", "timer")

    def __init__(self, on_end: Outcome, timeout: float | None) -> None:
        self.on_end = on_end
        self.timeout = timeout
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None


class H2Protocol(asyncio.Protocol):
    """An HTTP/2 connection over TLS; :meth:`request` sends a stream and
    returns its whole answer. Made by ``loop.create_connection``; await
    :meth:`handshake` before the first request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: TLSLayer) -> None:
        self._loop = loop
        self._tls = tls
        self._h2 = h2.connection.H2Connection(config=_CONFIG)
        self._handshaken: asyncio.Future[None] = loop.create_future()
        self._shaken = False  # TLS is done
        self._inbox = b""  # the start of a frame whose rest is still to come
        self._goaway_read = False
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._error: Exception | None = None  # why no stream can be sent now
        self._flushing = False  # a flush is due at the end of this turn
        self.answered = 0
        """Streams answered whole: a connection that turns requests away after
        answering others is making progress (nginx's GOAWAY after 1000)."""

    @property
    def tls_layer(self) -> TLSLayer:
        return self._tls

    @property
    def usable(self) -> bool:
        """New streams may go on this connection: it is not closed, lost,
        broken or gone away (a GOAWAY ends it: h2 reads nothing after one)."""
        return self._error is None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._shake()

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        tls.put(data)
        if not self._shaken and not self._shake():
            return
        try:
            data = tls.plaintext()
        except ssl.SSLError as exc:
            self._fail(httpx.ReadError(str(exc)))
            return
        data = self._until_goaway(data)
        if data:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.close_connection()  # h2 names the error to the server
                    self._flush()
                self._fail(httpx.RemoteProtocolError(str(exc)))
                return
            for event in events:
                self._on(event)
        self._flush()
        if tls.ended:
            self._fail(_disconnected())

    def _until_goaway(self, data: bytes) -> bytes:
        """What h2 may read now: whole frames, up to and including a GOAWAY.

        h2 takes no frame after a GOAWAY (its connection is then closed, and
        a frame that follows in the same read would make it raise before it
        says GOAWAY at all), so bytes past one are never given to it. The
        frame headers are read by hyperframe, h2's own framing layer.
        """
        if self._goaway_read:
            return b""
        if self._inbox:
            data = self._inbox + data
        at, size = 0, len(data)
        with memoryview(data) as view:
            while size - at >= _HEADER:
                frame, length = Frame.parse_frame_header(view[at : at + _HEADER])
                if size - at - _HEADER < length:
                    break  # the rest of this frame is still on its way
                at += _HEADER + length
                if isinstance(frame, GoAwayFrame):
                    self._goaway_read = True
                    break
        self._inbox = b"" if self._goaway_read else data[at:]
        return data[:at]

    def eof_received(self) -> bool:
        self._fail(_disconnected())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(httpx.ReadError(str(exc)) if exc else _disconnected())

    # -- the TLS handshake and the connection preface --------------------------

    async def handshake(self) -> None:
        """Wait for TLS, ALPN and the server's SETTINGS (ssl.SSLError or
        OSError if it fails)."""
        await self._handshaken

    def _shake(self) -> bool:
        tls = self._tls
        try:
            done = tls.handshake()
        except ssl.SSLError as exc:
            self._write(tls.outgoing())  # the alert says why to the server
            self._handshaken.set_exception(exc)
            self._handshaken.exception()  # retrieved: a timed-out caller never asks
            return False
        self._write(tls.outgoing())
        if not done:
            return False
        if tls.tls.selected_alpn_protocol() != "h2":
            name = tls.tls.server_hostname
            error = httpx.ConnectError(f"{name} did not agree to HTTP/2")
            self._handshaken.set_exception(error)
            self._handshaken.exception()
            return False
        self._shaken = True
        self._h2.local_settings = h2.settings.Settings(
            client=True, initial_values=_SETTINGS
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_WINDOW - 65535)
        self._flush()
        return True  # ready once the server's SETTINGS say its stream cap

    # -- streams ---------------------------------------------------------------

    @property
    def free(self) -> bool:
        """A stream may be sent now without a wait: under the server's cap,
        and none queued for a slot ahead of it."""
        return self._error is None and not self._waiting and not self._capped

    @property
    def _capped(self) -> bool:
        """As many streams open as the server's cap allows."""
        conn = self._h2
        return conn.open_outbound_streams >= conn.remote_settings.max_concurrent_streams

    async def request(
        self, request: httpx.Request, timeout: float | None
    ) -> httpx.Response:
        """Send `request` as a stream; its whole answer once the stream ends."""
        while self._capped:
            if not self.usable:
                break
            waiter = self._loop.create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the slot goes on
                else:
                    self._waiting.remove(waiter)
                raise
        if not self.usable:
            raise Stale()  # ended, or a GOAWAY came, while this one waited: unsent
        done: asyncio.Future[httpx.Response] = self._loop.create_future()

        def on_end(outcome: httpx.Response | BaseException) -> None:
            if done.done():
                return
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

        stream_id = self.send(request, timeout, on_end)
        try:
            return await done
        except asyncio.CancelledError:
            self._abandon(stream_id)
            raise

    def send(
        self, request: httpx.Request, timeout: float | None, on_end: Outcome
    ) -> int:
        """Send `request` as a stream now (the caller saw :attr:`free`); its
        answer or error goes to `on_end`, once, from this loop. Its id."""
        stream_id = self._h2.get_next_available_stream_id()
        stream = self._streams[stream_id] = _Stream(on_end, timeout)
        self._h2.send_headers(stream_id, request_headers(request), end_stream=True)
        self._flush_soon()
        if timeout is not None:
            stream.deadline = self._loop.time() + timeout
            stream.timer = self._loop.call_at(
                stream.deadline, self._on_timer, stream_id
            )
        return stream_id

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if self._error is None:
                self._h2.close_connection()
                self._flush()
            self._transport.close()
        self._fail(httpx.ReadError("the client closed with this request in flight"))

    # -- what the server sends -------------------------------------------------

    def _on(self, event: Any) -> None:
        stream = self._streams.get(getattr(event, "stream_id", 0) or 0)
        if stream is not None and stream.timeout is not None:
            # The read timeout, as httpx means it: the longest wait between
            # bytes. The stream's timer moves on to this when it fires.
            stream.deadline = self._loop.time() + stream.timeout
        if isinstance(event, h2.events.DataReceived):
            # Acknowledged even for a stream that has ended (reset, timed
            # out): the connection's window must not shrink for good.
            self._h2.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            if stream is None:
                return
            stream.body += event.data
            if len(stream.body) > MAX_BODY:
                self._end(event.stream_id, httpx.RemoteProtocolError(_TOO_BIG))
                self._reset(event.stream_id)
                return
        elif isinstance(event, h2.events.ResponseReceived):
            if stream is None:
                return
            for name, value in event.headers:
                if name == b":status":
                    stream.status = int(value)
                elif not name.startswith(b":"):
                    stream.headers.append((name, value))
        elif isinstance(event, h2.events.StreamEnded):
            self._end(event.stream_id, None)
        elif isinstance(event, h2.events.StreamReset):
            refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            self._end(
                event.stream_id,
                Refused()
                if refused
                else httpx.RemoteProtocolError(f"stream reset: {event.error_code!r}"),
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event.last_stream_id or 0, event.error_code)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self._handshaken.done():
                # Its first frame: a stream sent before it could pass its cap.
                self._handshaken.set_result(None)
            self._wake(all_of_them=True)  # each waiter checks the cap again

    def _goaway(self, last_id: int, error_code: Any) -> None:
        """No new streams, and no more frames (h2 reads none after a GOAWAY).

        The streams the server never saw go again on a new connection; so do
        those it did see, after a graceful GOAWAY (NO_ERROR): their answers
        can no longer be read, and a GET may be sent twice (RFC 9110, 9.2.2).
        After an error they end with it.
        """
        error = httpx.RemoteProtocolError(f"connection ended: {error_code!r}")
        for stream_id in list(self._streams):
            self._end(
                stream_id, Stale() if stream_id > last_id or not error_code else error
            )
        self._fail(error)

    def _end(self, stream_id: int, exc: BaseException | None) -> None:
        """The stream's end, told once: a stream ended is no longer listed."""
        stream = self._drop(stream_id)
        if stream is None:
            return
        if exc is not None:
            stream.on_end(exc)
            return
        self.answered += 1
        stream.on_end(
            httpx.Response(
                stream.status,
                headers=stream.headers,
                stream=httpx.ByteStream(bytes(stream.body)),
                extensions={"http_version": _VERSION, CONNECTION: self},
            )
        )

    def _abandon(self, stream_id: int) -> None:
        """Its caller is gone (cancelled): forget the stream, and say so."""
        self._drop(stream_id)
        self._reset(stream_id)

    def _drop(self, stream_id: int) -> _Stream | None:
        """The stream, no longer listed; its timer stopped, its slot passed on."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            if stream.timer is not None:
                stream.timer.cancel()
            self._wake()  # its slot goes to a stream waiting for one
        return stream

    def _reset(self, stream_id: int) -> None:
        if self._error is None:
            try:
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                return  # it ended meanwhile
            self._flush()

    def _on_timer(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if self._loop.time() < stream.deadline:  # bytes came: wait on
            stream.timer = self._loop.call_at(
                stream.deadline, self._on_timer, stream_id
            )
            return
        stream.timer = None
        self._end(stream_id, httpx.ReadTimeout("timed out"))
        self._reset(stream_id)

    def _wake(self, *, all_of_them: bool = False) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_of_them:
                    return

    def _fail(self, exc: Exception) -> None:
        """The connection is gone: every stream ends, no new one starts."""
        if not self._handshaken.done():
            what = "the TLS handshake" if not self._shaken else "the HTTP/2 preface"
            self._handshaken.set_exception(httpx.ConnectError(f"closed during {what}"))
            self._handshaken.exception()
        if self._error is None:
            self._error = exc
        for stream_id in list(self._streams):  # (after a GOAWAY: ended already)
            self._end(stream_id, exc)
        self._wake(all_of_them=True)
        if self._transport is not None:
            self._transport.close()

    def _flush_soon(self) -> None:
        """Flush once this loop's turn ends: the streams sent in one turn (a
        burst of tasks, a blocking batch) go in one TLS record and one write."""
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flushing = False
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            try:
                self._write(self._tls.encrypt(data))
            except ssl.SSLError as exc:
                self._fail(httpx.WriteError(str(exc)))

    def _write(self, data: bytes) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


_TOO_BIG = f"response body over {MAX_BODY} bytes: not a flag"


def _disconnected() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")
