"""The server object and its lifetime: bind, serve in threads, stop cleanly.

`FlagServer` is a `ThreadingHTTPServer` of one kind (``local``, ``delay`` or
``error``) with a listen backlog big enough for a thousand simultaneous
connections, admission only while descriptors last (`flags2.servers.limits`),
daemon handler threads kept for the next connection (Ctrl-C never waits for a
sleeping request) and no traceback when a client goes away or a request fails.
Embedding one in a program or a test::

    >>> from flags2.servers.options import ServerOptions
    >>> from flags2.servers.server import FlagServer, serve_in_thread
    >>> server = FlagServer("delay", ServerOptions(seed=7, max_delay=1), port=0)
    >>> thread = serve_in_thread(server)
    >>> server.base_url
    'http://127.0.0.1:.../flags'
    >>> server.shutdown(); server.server_close()

`open_servers` binds several at once with one-line errors, and
`serve_until_stopped` runs them until Ctrl-C, SIGTERM or a stop event.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import signal
import socket
import sys
import threading
import traceback
import zlib
from _thread import start_new_thread
from collections.abc import Callable, Iterator, Sequence
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType
from typing import Any, TextIO

from .handler import FlagRequestHandler
from .limits import CONNECTIONS, AcceptBackoff, Saturated
from .options import SERVER_KINDS, ServerOptions
from .plan import new_seed
from .stats import Stats

__all__ = [
    "FlagServer",
    "ServerStartError",
    "open_servers",
    "serve_in_thread",
    "serve_until_stopped",
]

_QUIET_ERRNOS = {errno.EBADF, errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET}
_LOG_LOCK = threading.Lock()  # shared by all servers so log lines never interleave
# The paths whose GETs are counted one by one for the plan's `nth`: every flag
# and metadata path a client can ask for, found or not, at most 676 * 2 short
# keys (tens of KB). Any other path is counted in one of _BUCKETS shared
# counters, so nothing a client sends grows the count.
_COUNTED = re.compile(r"/flags/([a-z]{2})/(?:\1\.gif|metadata\.json)")
_BUCKETS = 1024
# Every byte a log line may not show as it is: C0 controls, DEL, and the
# backslash, so that an escape is never ambiguous; anything past ASCII
# (C1 controls such as CSI included) is escaped by backslashreplace.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_ESCAPES[ord("\\")] = "\\\\"
# How long get_request waits for a free connection slot before letting
# serve_forever check for shutdown again.
_ADMIT_WAIT = 0.2
# How long a handler thread with no connection waits for one before it ends.
_IDLE_THREAD = 10.0


_Work = Callable[[Any, Any], None]


class _Handlers:
    """Threads that each serve one connection, then wait for the next.

    Starting and ending a thread cost about a tenth of the CPU a whole
    request costs here, and a run at ``-e -m 1000`` opens hundreds of
    connections at once, run after run against a shared server. A thread
    that has served its connection waits `idle` seconds for another; a
    connection finds a waiting thread if there is one, else starts one.
    Every thread is a daemon (``_thread``): Ctrl-C never waits on one.
    """

    def __init__(self, idle: float = _IDLE_THREAD) -> None:
        self._idle_for = idle
        self._jobs: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Waiting threads not yet claimed by a queued job: a thread may end
        # only while this is positive, so every queued job has a taker.
        self._idle = 0

    @property
    def waiting(self) -> int:
        """Threads waiting for a connection that none has claimed yet."""
        return self._idle

    def run(self, work: _Work, request: Any, address: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((request, address))
                return
        start_new_thread(self._serve, (work, request, address))

    def _serve(self, work: _Work, request: Any, address: Any) -> None:
        while True:
            work(request, address)
            with self._lock:
                self._idle += 1
            while True:
                try:
                    request, address = self._jobs.get(timeout=self._idle_for)
                    break
                except queue.Empty:
                    with self._lock:
                        if self._idle:
                            self._idle -= 1
                            return
                    # Claimed just as the wait ran out: its job is on the way.


class ServerStartError(Exception):
    """A server could not start; the message is one line, fit for stderr."""


class FlagServer(ThreadingHTTPServer):
    """One bundled server: `kind` decides the delays and faults, `options` the rest."""

    # The stdlib's 5 loses connections as soon as a client opens a few hundred at
    # once; the kernel caps this at net.core.somaxconn (4096 on current Linux).
    request_queue_size = 1024
    daemon_threads = True
    # Otherwise server_close() joins every handler thread, including one
    # sleeping through a 15 s stall.
    block_on_close = False

    def __init__(
        self,
        kind: str,
        options: ServerOptions,
        *,
        port: int = 0,
        log_stream: TextIO | None = None,
    ) -> None:
        if kind not in SERVER_KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.options = options
        self.seed = options.seed if options.seed is not None else new_seed()
        self.root = os.path.realpath(options.directory)
        self.stats = Stats()
        self._log_stream = log_stream
        self._seen: dict[str, int] = {}
        self._buckets = [0] * _BUCKETS
        self._seen_lock = threading.Lock()
        self._backoff = AcceptBackoff()
        self._handlers = _Handlers()
        family, address = _resolve(options.bind, port)
        self.address_family = family
        super().__init__(address, FlagRequestHandler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # `--bind ::` should accept IPv4 too, as the book's DualStackServer does.
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Skip HTTPServer.server_bind: its socket.getfqdn() can hang for seconds
        # on a machine without working reverse DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        # Admit a connection only while descriptors are left for it and for
        # the file it will ask for; until then it waits in the listen backlog.
        if not CONNECTIONS.admit(_ADMIT_WAIT):
            raise Saturated(errno.EMFILE, "every connection slot is taken")
        try:
            request = super().get_request()
        except OSError as exc:
            CONNECTIONS.release()
            # Out of descriptors the listening socket stays readable: retrying
            # at once would spin at 100% CPU.
            self._backoff.failed(exc)
            raise
        self._backoff.succeeded()
        return request

    def close_request(self, request: Any) -> None:
        try:
            super().close_request(request)
        finally:
            CONNECTIONS.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.block_on_close or not self.daemon_threads:
            # Someone wants handler threads to be joined: they need Thread objects.
            super().process_request(request, client_address)
            return
        # threading.Thread.start() waits for the new thread to run, a GIL round
        # trip that cost ~320 us per connection here: 676 connections at once
        # took up to 0.8 s to reach their handlers, time that -e -m 1000
        # counted against the client. The low-level threads start at once,
        # and are kept for the next connections; nothing joins them.
        self._handlers.run(self._handle_in_thread, request, client_address)

    def _handle_in_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    @property
    def port(self) -> int:
        """The port actually bound (useful after asking for port 0)."""
        return int(self.server_address[1])

    @property
    def root_url(self) -> str:
        """URL of the served folder's root, e.g. ``http://127.0.0.1:8001``."""
        host = str(self.server_address[0])
        # A wildcard address is not somewhere a client can connect to.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The BASE_URL a flags client uses, e.g. ``http://127.0.0.1:8001/flags``."""
        return f"{self.root_url}/flags"

    def next_nth(self, path: str) -> int:
        """Return how many GETs of `path` came before this one, and count it.

        Flag and metadata paths (``/flags/xx/xx.gif``,
        ``/flags/xx/metadata.json``) are counted each on its own. Any other
        path (a listing, ``/``, a file that is not there) is counted in one of
        1,024 buckets chosen by a CRC-32 of the path: so a retried listing gets
        a new plan each time, and eventually succeeds on ERROR, as a retried
        flag does, while the memory stays fixed. Two such paths rarely share a
        bucket; when they do, they share its count.
        """
        with self._seen_lock:
            if _COUNTED.fullmatch(path):
                nth = self._seen.get(path, 0)
                self._seen[path] = nth + 1
            else:
                key = zlib.crc32(path.encode("utf-8", "surrogateescape"))
                bucket = key % _BUCKETS
                nth = self._buckets[bucket]
                self._buckets[bucket] = nth + 1
        return nth

    @property
    def counted_paths(self) -> int:
        """How many paths are counted one by one (at most 1,352)."""
        with self._seen_lock:
            return len(self._seen)

    def write_log(self, line: str) -> None:
        """Write one log line to the log stream (stderr unless given).

        Clients choose much of what is logged (a path, a request line), so
        every control character, every byte past ASCII and the backslash are
        written as escapes (``\\x1b``, ``\\xe9``, ``\\\\``): what a client
        sends can neither move a terminal's cursor nor start a new line.
        """
        self._write([line])

    def _write(self, lines: list[str]) -> None:
        stream = self._log_stream if self._log_stream is not None else sys.stderr
        text = "\n".join(map(_printable, lines))
        with _LOG_LOCK:
            print(text, file=stream, flush=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # Clients that give up (timeouts, Ctrl-C, a closed pool) are routine in a
        # load test, not bugs: no traceback for them.
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        if isinstance(exc, OSError) and exc.errno in _QUIET_ERRNOS:
            return
        # Anything else is a bug: one line, not a traceback that a client could
        # make the server print at will; --log shows the whole traceback.
        line = f"error serving {client_address[0]}: {type(exc).__name__}: {exc}"
        self.write_log(line)
        if self.options.log:
            self._write(traceback.format_exc().rstrip().splitlines())


def _printable(text: str) -> str:
    escaped = text.translate(_ESCAPES)
    return escaped.encode("ascii", "backslashreplace").decode("ascii")


def _resolve(bind: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ServerStartError(f"cannot bind to {bind!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def open_servers(
    kinds_ports: Sequence[tuple[str, int]],
    options: ServerOptions,
    *,
    log_stream: TextIO | None = None,
) -> list[FlagServer]:
    """Bind one server per (kind, port), all sharing `options` and one seed.

    Raises `ServerStartError` with a one-line message (and closes any server
    already bound) if a port is taken or the address is unusable.
    """
    if options.seed is None:
        # One seed for the group, so the banner shows a single replayable number.
        from dataclasses import replace

        options = replace(options, seed=new_seed())
    servers: list[FlagServer] = []
    try:
        for kind, port in kinds_ports:
            try:
                servers.append(
                    FlagServer(kind, options, port=port, log_stream=log_stream)
                )
            except OSError as exc:
                raise ServerStartError(
                    _bind_message(kind, options.bind, port, exc)
                ) from None
    except BaseException:
        for server in servers:
            server.server_close()
        raise
    return servers


def _bind_message(kind: str, bind: str, port: int, exc: OSError) -> str:
    where = f"{bind}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {bind} (needed by the {kind.upper()}"
            " server); stop what is using it or choose another --port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"permission denied to listen on {where} (ports below 1024 need privileges)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind to {bind!r}: not an address of this machine"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def serve_in_thread(
    server: FlagServer, *, poll_interval: float = 0.2
) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread and return the thread."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name=f"flags2-{server.kind}-{server.port}",
        daemon=True,
    )
    thread.start()
    return thread


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # SIGTERM (kill, systemd, launch.background) should stop as cleanly as Ctrl-C.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_until_stopped(
    servers: Sequence[FlagServer],
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until Ctrl-C, SIGTERM or `stop` is set; then shut every server down.

    `on_ready` runs once the servers serve and SIGTERM is handled: announce them
    there, so whoever reads the announcement can already stop them cleanly.
    Returns normally in all three cases; the servers are closed on return.
    """
    stop = stop if stop is not None else threading.Event()
    threads = [serve_in_thread(server) for server in servers]
    try:
        with _sigterm_as_interrupt():
            try:
                if on_ready is not None:
                    on_ready()
                # A timed wait keeps the main thread responsive to signals.
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        # shutdown() waits up to a poll interval; in parallel, that is paid once.
        stoppers = [threading.Thread(target=server.shutdown) for server in servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for server in servers:
            server.server_close()
        for thread in threads:
            thread.join(timeout=2)
