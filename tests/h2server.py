"""A raw HTTP/2 server over TLS, for what good servers will not send on cue.

Built on the ``h2`` library's server side, one thread per connection. A test
gives `answer`, which decides each stream's fate from the connection's index,
the stream's number on that connection (from 1) and the path:

- ``"ok"``: the flag (or a 404), as a server should;
- ``"goaway"``: a GOAWAY whose last stream is the one before, then the end of
  the connection once the earlier ones are answered (RFC 9113, 6.8);
- ``"goaway-early"``: the same GOAWAY, sent ahead of the answers not yet sent,
  in one write (as a server that says it first does);
- ``"refuse"``: RST_STREAM with REFUSED_STREAM (the server never saw it);
- ``"reset"``: RST_STREAM with INTERNAL_ERROR;
- ``"drop"``: the connection closed at once, with streams in flight;
- ``"silent"``: no answer at all.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame

from tests.helpers import flag_bytes

__all__ = ["Answer", "H2Server"]

Answer = Callable[[int, int, str], str]


class H2Server:
    def __init__(
        self,
        certfile: str,
        answer: Answer,
        *,
        max_streams: int | None = None,
        handshake_delay: float = 0.0,
    ) -> None:
        self._answer = answer
        self._delay = handshake_delay
        self._max_streams = max_streams
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certfile)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"https://localhost:{self.port}"
        self.connections = 0
        self.open = 0  # connections not yet ended
        self.fates: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[ssl.SSLSocket] = set()

    def __enter__(self) -> H2Server:
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the accept() that close() alone would leave blocked.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for raw in sockets:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                index = self.connections
                self.connections += 1
                self.open += 1
            thread = threading.Thread(
                target=self._serve, args=(raw, index), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket, index: int) -> None:
        try:
            time.sleep(self._delay)  # the client's handshake waits meanwhile
            with self._context.wrap_socket(raw, server_side=True) as sock:
                with self._lock:
                    self._sockets.add(sock)  # for __exit__ to end its recv
                self._converse(sock, index)
        except (OSError, ssl.SSLError):
            pass  # the client went away: nothing to answer

        finally:
            raw.close()
            with self._lock:
                self.open -= 1
                self._sockets = {s for s in self._sockets if s.fileno() != -1}

    def _converse(self, sock: ssl.SSLSocket, index: int) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        if self._max_streams is not None:
            cap = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
            conn.update_settings({cap: self._max_streams})
        sock.sendall(conn.data_to_send())
        streams = 0
        going_away = False
        early = b""  # a GOAWAY to send ahead of this read's answers
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if not isinstance(event, h2.events.RequestReceived):
                    continue
                if going_away:
                    continue  # past the GOAWAY's last stream: never seen
                streams += 1
                headers = dict(event.headers or [])
                path = headers[b":path"].decode()
                fate = self._answer(index, streams, path)
                with self._lock:
                    self.fates.append(fate)
                stream_id = event.stream_id
                assert stream_id is not None
                if fate == "ok":
                    _send_flag(conn, stream_id, path)
                elif fate == "goaway-early":
                    early = GoAwayFrame(0, last_stream_id=stream_id - 2).serialize()
                    going_away = True
                elif fate == "goaway":
                    # The frame itself: h2's close_connection would close its
                    # state machine, and the streams still coming would break it.
                    goaway = GoAwayFrame(0, last_stream_id=stream_id - 2)
                    sock.sendall(conn.data_to_send() + goaway.serialize())
                    going_away = True
                elif fate == "refuse":
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                elif fate == "reset":
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                elif fate == "drop":
                    sock.sendall(conn.data_to_send())
                    return
            sock.sendall(early + conn.data_to_send())
            early = b""
            if going_away:
                # Every stream it saw is answered. A graceful end: what the
                # client still sends is read until it closes, so that no TCP
                # reset overtakes the answers (and the GOAWAY) on their way.
                sock.settimeout(5)
                while sock.recv(65536):
                    pass
                return


def _send_flag(conn: h2.connection.H2Connection, stream_id: int, path: str) -> None:
    parts = path.split("/")
    body = b""
    if len(parts) == 4 and parts[1] == "flags":
        try:
            body = flag_bytes(parts[2].upper())
        except FileNotFoundError:
            body = b""
    status = b"200" if body else b"404"
    conn.send_headers(
        stream_id,
        [(b":status", status), (b"content-length", str(len(body)).encode())],
        end_stream=not body,
    )
    size = conn.max_outbound_frame_size
    for start in range(0, len(body), size):  # the client's window is ample
        end = start + size >= len(body)
        conn.send_data(stream_id, body[start : start + size], end_stream=end)
