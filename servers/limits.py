"""What a client can make a server spend: descriptors, and time per request head.

Each connection costs a descriptor, and a GET briefly costs one more for the
file it sends. Under the usual ``ulimit -n 1024`` a thousand connections do not
fit, and a server that runs out cannot even accept the connection that would
tell it so: ``accept()`` fails with EMFILE while the listening socket stays
readable, so a naive loop spins. Three defences live here:

* `raise_descriptor_limit` lifts the soft limit to the hard one at start, and
  `limit_note` says in the banner when even that leaves room for fewer than
  `WANTED_CONNECTIONS`;
* `CONNECTIONS` admits connections only while descriptors are left for the
  files they ask for, and never more than `MAX_CONNECTIONS` (the rest wait in
  the listen backlog, not refused);
* `AcceptBackoff` sleeps, growing, after each EMFILE/ENFILE instead of retrying
  at once.

`HeadReader` gives a request head one deadline from its first byte: a client
sending a header byte a second (slowloris) is dropped once that runs out, where
a per-read timeout would keep it forever.

Memory is bounded the same way: a connection holds at most one head of
`flags2.servers.head.HEAD_LIMIT` bytes while it reads it, and little more than
its path once parsed (a GET sleeping its delay keeps no other header), on top
of its thread; `MAX_CONNECTIONS` caps how many there are. Two thousand
connections each in the middle of the biggest head allowed cost the server
under 100 MiB, and as many sleeping their delay after one, under 60 MiB.
"""

from __future__ import annotations

import errno
import io
import socket
import threading
import time
from typing import Any

# The one copy of the platform split, shared with the client: flags2 is
# importable wherever these servers run (they are installed as flags2.servers,
# and a checkout holds both folders side by side).
from flags2 import portable

__all__ = [
    "CONNECTIONS",
    "MAX_CONNECTIONS",
    "RESERVE",
    "WANTED_CONNECTIONS",
    "AcceptBackoff",
    "ConnectionGate",
    "HeadReader",
    "Saturated",
    "connection_capacity",
    "limit_note",
    "raise_descriptor_limit",
]

WANTED_CONNECTIONS = 1000
"""Connections the servers should hold at once: the clients' maximum ``-m``."""

MAX_CONNECTIONS = 2048
"""Connections a server process holds at once, however many descriptors it has:
twice `WANTED_CONNECTIONS`, so two runs at ``-m 1000`` can share a server, and
a bound on what connections make it hold (see above)."""

RESERVE = 64
"""Descriptors kept back from connections: stdio, listening sockets, pipes, and
the files that GETs in progress have open."""

_EXHAUSTED = {*portable.DESCRIPTOR_ERRNOS, errno.ENOBUFS, errno.ENOMEM}
_UNLIMITED = 1 << 30  # connections admitted where no descriptor limit applies


def raise_descriptor_limit() -> int | None:
    """Lift the soft RLIMIT_NOFILE to the hard limit where allowed; return the soft.

    None where there is no such limit (Windows). Only a program's start-up
    should call this: the limit is process-wide.
    """
    return portable.raise_open_file_limit()


def connection_capacity(soft: int | None = None) -> int:
    """Connections admitted at once under descriptor limit `soft` (default: now)."""
    if soft is None:
        soft = portable.open_file_limit()
    if soft is None:  # unlimited, or no such limit here
        return _UNLIMITED
    return max(1, soft - RESERVE)


def limit_note(soft: int | None) -> str | None:
    """A banner line when limit `soft` holds fewer than `WANTED_CONNECTIONS`."""
    capacity = connection_capacity(soft)
    if soft is None or capacity >= WANTED_CONNECTIONS:
        return None
    return (
        f"note: the descriptor limit (ulimit -n) is {soft}, so at most {capacity}"
        f" connections are served at once, not {WANTED_CONNECTIONS}; more wait"
        " their turn"
    )


class Saturated(OSError):
    """No connection slot is free; socketserver ignores an OSError from accept."""


class ConnectionGate:
    """Process-wide count of open connections, capped by `connection_capacity`
    and by `most`.

    Process-wide because descriptors are: LOCAL, DELAY and ERROR in one
    process share one table.
    """

    def __init__(self, most: int = MAX_CONNECTIONS) -> None:
        self._most = most
        self._open = 0
        self._changed = threading.Condition()

    @property
    def open(self) -> int:
        """Connections admitted and not yet released."""
        return self._open

    def admit(self, timeout: float) -> bool:
        """Take a slot, waiting up to `timeout` seconds for one; True if taken."""
        deadline = time.monotonic() + timeout
        with self._changed:
            # The limit is re-read each time: a test or a program may change it.
            while self._open >= min(connection_capacity(), self._most):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._open += 1
            return True

    def release(self) -> None:
        """Give back a slot taken by `admit`."""
        with self._changed:
            self._open = max(0, self._open - 1)
            self._changed.notify()


CONNECTIONS = ConnectionGate()
"""The gate every `flags2.servers.server.FlagServer` in this process admits through."""


class AcceptBackoff:
    """Sleep after an accept() that failed for want of descriptors or memory."""

    FIRST = 0.01
    LONGEST = 0.5

    def __init__(self) -> None:
        self._next = self.FIRST

    def failed(self, exc: OSError) -> None:
        """Call with accept()'s error; sleeps (growing) if it means exhaustion."""
        if exc.errno not in _EXHAUSTED:
            return
        # Sleeping holds up serve_forever's shutdown check by at most LONGEST.
        time.sleep(self._next)
        self._next = min(self._next * 2, self.LONGEST)

    def succeeded(self) -> None:
        """Call after a successful accept()."""
        self._next = self.FIRST


class HeadReader(io.RawIOBase):
    """The raw reader under a handler's ``rfile``: one deadline per request head.

    Between requests a read waits up to `limit` seconds (the keep-alive idle
    timeout). The first bytes of a head start its clock; every later read of
    that head gets only what is left of `limit`. `head_done` stops the clock.
    A read past the deadline raises `TimeoutError`, which the handler already
    treats as "close this connection".

    The connection's bounds (`flags2.portable.SocketBounds`) are the kernel's
    where it keeps them: among hundreds of handler threads at ``-m 1000``,
    every poll a socket timeout adds is another turn of the GIL. A send is
    bounded by `limit` too; `BoundedWriter` says when one runs out.
    """

    def __init__(self, sock: socket.socket, limit: float) -> None:
        super().__init__()
        self._sock = sock
        self._limit = limit
        self._deadline: float | None = None
        self._in_head = False
        self._bounds = portable.SocketBounds(sock)
        self._bounds.arm(limit, send=True)
        self._bounds.arm(limit)

    def readable(self) -> bool:
        return True

    def next_head(self) -> None:
        """A new request head is expected: wait `limit` for its first byte."""
        self._in_head = True
        self._deadline = None
        self._bounds.arm(self._limit)

    def head_done(self) -> None:
        """The head has been read: back to a plain per-read timeout."""
        self._in_head = False
        self._deadline = None
        self._bounds.arm(self._limit)

    def readinto(self, buffer: Any) -> int:
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request head not complete in time")
            self._bounds.arm(remaining)
        try:
            count = self._sock.recv_into(buffer)
        except BlockingIOError:  # the kernel's bound ran out
            raise TimeoutError("timed out") from None
        if self._in_head and self._deadline is None and count:
            self._deadline = time.monotonic() + self._limit
        return count


class BoundedWriter(io.RawIOBase):
    """The raw writer under a handler's ``wfile``: one send per call, bounded.

    A send that runs out of its bound raises TimeoutError, whether the kernel
    kept the bound (a blocking socket's BlockingIOError, see `HeadReader`) or
    the socket did: the handler then closes the connection quietly, as for
    a client gone. Every later write fails at once, so what is left in the
    buffer is dropped instead of waiting out a second bound at the close.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._timed_out = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._timed_out:
            raise TimeoutError("timed out before")
        try:
            return self._sock.send(data)
        except (BlockingIOError, TimeoutError):
            self._timed_out = True
            raise TimeoutError("timed out") from None
