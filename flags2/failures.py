"""Failures every flag of a run would meet, told once with their cause.

A flag's error says what went wrong with that flag, in httpx's words. Some
causes are the run's, not the flag's: the server's certificate is not
trusted, its host name does not resolve, it refuses connections. Every flag
would fail the same way, so :class:`flags2.tracker.Tracker` stops the run after
a few in a row (before any answer) and says the cause once::

    flags2: cannot verify the certificate of localhost: unable to get local
    issuer certificate; if you trust its CA, name it in SSL_CERT_FILE=ca.pem
    (or add it to the system store); the run stops here

:func:`cause_of` reads the cause from the exception chain (httpx wraps
httpcore's error, which wraps the ssl or socket one), never from the text.
:func:`unresolvable` looks the run's host up once before any request: in
thread-pool mode 30 threads asking the resolver at once for an unknown name
can each wait out its 5 s timeout.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import NamedTuple

import httpx2 as httpx

__all__ = ["Cause", "cause_of", "unresolvable"]

# getaddrinfo's "no such name" codes: EAI_NONAME (POSIX), EAI_NODATA (glibc:
# the name exists without an address), and Windows' WSAHOST_NOT_FOUND.
# EAI_AGAIN (a resolver that did not answer) is transient, so not here.
_NO_SUCH_NAME = {
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        11001,
    )
    if code is not None
}


class Cause(NamedTuple):
    """Why a request failed, when every request to the same place would.

    `kind` is ``certificate``, ``dns`` or ``refused``; `text` says it in one
    line, naming the host. Two failures with the same cause compare equal.
    """

    kind: str
    text: str

    @property
    def transient(self) -> bool:
        """Worth a retry: a refused connection (a server restarting) is."""
        return self.kind == "refused"


def cause_of(exc: BaseException) -> Cause | None:
    """The run-wide cause of `exc`, or None when it may be this flag's alone."""
    host = _host(exc)
    for link in _chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            reason = link.verify_message or str(link)
            if "mismatch" in reason.lower():
                advice = "it is the certificate of another host name"
            else:
                advice = (
                    "if you trust its CA, name it in SSL_CERT_FILE=ca.pem"
                    " (or add it to the system store)"
                )
            return Cause(
                "certificate",
                f"cannot verify the certificate of {host}: {reason}; {advice}",
            )
        if isinstance(link, socket.gaierror) and link.errno in _NO_SUCH_NAME:
            return Cause("dns", f"the host {host} does not resolve: {link.strerror}")
        if isinstance(link, ConnectionRefusedError):
            return Cause("refused", f"{host} refused the connection")
    return None


def unresolvable(
    base_url: str, proxy: str | None, timeout: float | None = None
) -> Cause | None:
    """The cause, if the run's host name does not exist; None otherwise.

    One lookup, before any request (through a proxy the proxy resolves, so
    none), of the A-label the requests will ask for (``straße.example`` is
    ``xn--strae-oqa.example``, as httpx's Host header says), within `timeout`
    (the run's ``--timeout``, as a connection's lookup is): a resolver that
    does not answer by then is left to the requests and their retries.
    """
    try:
        url = httpx.URL(base_url)
        host = url.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        return None
    if proxy is not None or not host:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    # getaddrinfo cannot be interrupted: a daemon thread the run leaves behind.
    lookup = threading.Thread(target=look_up, name="flags2-lookup", daemon=True)
    lookup.start()
    lookup.join(timeout)
    error = outcome[0] if outcome else None
    if isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_NAME:
        return Cause("dns", f"the host {host} does not resolve: {error.strerror}")
    return None  # it resolved, or the requests will say why in their words


def _host(exc: BaseException) -> str:
    try:
        url = exc.request.url if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:  # an error raised without its request
        url = None
    if url is None:
        return "the server"
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, its causes and contexts, and the members of any group among them."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        if isinstance(link, BaseExceptionGroup):
            todo.extend(link.exceptions)
        for nxt in (link.__cause__, link.__context__):
            if nxt is not None:
                todo.append(nxt)
