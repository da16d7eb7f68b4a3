"""The plan of a run's clients, shared by the blocking and the async pools.

How many clients a run has, how big their pools are, how they verify TLS, and
whether they go through the lean plain-http transports (:mod:`flags2.clients`
for the blocking modes, :mod:`flags2.aioclients` for asyncio). A module of its
own so that neither pool imports the other's transport.

An https run offers HTTP/2 by ALPN unless ``--http1.1``; the server picks,
in one connection made before the run (:func:`flags2.tls.negotiated`): ``h2``
and the run's requests are streams of :mod:`flags2.h2transport`, ``http/1.1``
and they go through the lean transport, over TLS, as ``--http1.1`` does. A
decision made once, not per connection, because a connection's protocol is
known only after its handshake, and the lean transport cannot hand an HTTP/2
connection to httpcore through any public API; a probe that fails (refused,
not trusted, silent) leaves the run to the lean transport too, whose requests
say why in httpx's words, each connection within its own timeout: httpcore
would queue every HTTP/2 request on the one connection being made, so that
against a silent server they failed one connect timeout after another.
Through a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) an https run keeps httpx2's
own transport, which honours it. Over HTTP/2 a client's requests are
streams on one connection, so a client holds ``STREAMS_PER_CONNECTION`` of
the run's slots: RFC 9113 (6.5.2) asks servers to allow at least 100
concurrent streams, so no request waits for one, and against a server that
allows fewer the rest wait on the connection (a wait, never an error).
Redirects are followed, at most ``MAX_REDIRECTS`` of them, never from https
to plain http (:class:`RefuseDowngrade`).
"""

from __future__ import annotations

import ssl
from typing import Any, NamedTuple
from urllib.request import getproxies

import httpx2 as httpx

from flags2 import __version__
from flags2.settings import Settings
from flags2.tls import Sessions

__all__ = [
    "CONNECTIONS_PER_CLIENT",
    "MAX_REDIRECTS",
    "STREAMS_PER_CONNECTION",
    "USER_AGENT",
    "ClientPlan",
    "Origin",
    "RefuseDowngrade",
    "fallback_options",
    "lean_request",
    "lean_transport_fits",
    "origin",
    "server_alpn",
    "split_slots",
]

CONNECTIONS_PER_CLIENT = 32
STREAMS_PER_CONNECTION = 100  # RFC 9113's floor for a server's stream cap
MAX_REDIRECTS = 10  # a flag is one hop away; more is a loop or a misconfiguration
USER_AGENT = f"flags2/{__version__}"  # a polite client says who it is


def split_slots(
    concurrency: int, per_client: int = CONNECTIONS_PER_CLIENT
) -> list[int]:
    """Pool sizes, as even as possible, that add up to `concurrency`."""
    n_clients = max(1, -(-concurrency // per_client))
    size, extra = divmod(concurrency, n_clients)
    return [size + (i < extra) for i in range(n_clients)]


def lean_transport_fits(base_url: str) -> bool:
    """True when the run can use the lean plain-http transport."""
    if not base_url.lower().startswith("http:"):
        return False
    # httpx honours HTTP_PROXY and friends; the lean transport does not.
    proxies = getproxies()
    return "http" not in proxies and "all" not in proxies


def fallback_options(
    verify: ssl.SSLContext | bool, limits: httpx.Limits
) -> dict[str, Any]:
    """The arguments of the client a lean transport hands the rest to (https).

    A client built without ``transport=``, so that httpx2 itself reads the
    proxy environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``) and mounts a proxy wherever plain httpx2 would: after an
    http->https redirect, the ``HTTPS_PROXY`` gets the ``CONNECT``. The run's
    client, whose transport is the lean one, ignores that environment (httpx2
    reads it only when no ``transport=`` is given) and follows the redirects;
    this one only sends.
    """
    return {
        "verify": verify,
        "limits": limits,
        "trust_env": True,
        "follow_redirects": False,
    }


def lean_request(request: httpx.Request, *, tls: bool) -> bool:
    """True for what the lean transports carry: a GET with no body, over plain
    http, or over https when `tls` (no proxy is named for https)."""
    scheme = request.url.scheme
    return (
        (scheme == "http" or (tls and scheme == "https"))
        and request.method == "GET"
        and "Content-Length" not in request.headers
        and "Transfer-Encoding" not in request.headers
    )


Origin = tuple[str, str, int]
"""Scheme, A-label and port: what one connection reaches, the key of its pool."""


def origin(url: httpx.URL) -> Origin:
    """Scheme, host and port a lean connection reaches: the host is the IDNA
    2008 A-label of the Host header, never the Unicode name (IDNA 2003)."""
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    return scheme, url.raw_host.decode("ascii"), port


class ClientPlan(NamedTuple):
    """How a run's clients verify TLS, how big their pools are, whether they go lean.

    The lean transport has no pool to scan, so one client holds every slot.
    It carries https itself unless a proxy is named for it (`lean_tls`), and
    hands the rest (https through that proxy, a request with a body) to an
    httpx client of its own (:func:`fallback_options`), created only then:
    ``verify=True`` loads the CA store (~35 ms) only if it is needed. Without
    it, the run's clients share one context, loaded once.
    """

    verify: ssl.SSLContext | bool
    sizes: list[int]
    lean: bool
    timeout: httpx.Timeout
    http2: bool = False
    lean_tls: bool = True
    sessions: Sessions | None = None
    """TLS sessions to resume, seeded by the probe (flags2.tls.Sessions)."""

    @classmethod
    def for_run(cls, settings: Settings, alpn: str | None = None) -> ClientPlan:
        """The plan for `settings`; `alpn` is the server's ALPN answer when the
        run has asked already (a process-pool worker gets its parent's), else
        an https run asks here (:func:`server_alpn`): for HTTP/2, or under
        ``--http1.1`` for the TLS session its connections resume."""
        # Leases guarantee a free slot, so a wait for one would be a bug: no limit.
        timeout = httpx.Timeout(settings.timeout, pool=None)
        direct = _https_direct()
        if lean_transport_fits(settings.base_url):
            return cls(True, [settings.concurrency], True, timeout, lean_tls=direct)
        verify = httpx.create_ssl_context()
        https = settings.base_url.lower().startswith("https:")
        if https and direct:
            sessions = Sessions()
            if alpn is None:
                alpn = server_alpn(settings, verify, sessions)
            http2 = settings.http2 and alpn == "h2"
            if not http2:
                return cls(
                    verify, [settings.concurrency], True, timeout, sessions=sessions
                )
            sizes = split_slots(settings.concurrency, STREAMS_PER_CONNECTION)
            return cls(verify, sizes, False, timeout, True)
        sizes = split_slots(settings.concurrency, CONNECTIONS_PER_CLIENT)
        return cls(verify, sizes, False, timeout, lean_tls=False)

    def lean_options(self) -> dict[str, Any]:
        """A lean transport's arguments: its TLS, what its fallback is built with."""
        return {
            "verify": self.verify,
            "limits": _limits(self.sizes[0]),
            "tls": self.lean_tls,
            "sessions": self.sessions,
        }

    def client_options(
        self, size: int, transport: Any, private_loop: Any = None
    ) -> dict[str, Any]:
        """One client's arguments, the same for a blocking and an async client;
        blocking HTTP/2 clients share `private_loop` (a h2transport.PrivateLoop)."""
        return {
            "verify": self.verify,
            "limits": _limits(size),
            "timeout": self.timeout,
            "follow_redirects": True,
            "max_redirects": MAX_REDIRECTS,
            "event_hooks": {"response": [RefuseDowngrade()]},
            "transport": transport or self._http2_transport(size, private_loop),
            "headers": {"User-Agent": USER_AGENT},
        }

    def _http2_transport(self, size: int, private_loop: Any) -> Any:
        if not self.http2:
            return None  # httpx's own: it also applies the environment's proxy
        from flags2.h2transport import HTTP2Transport

        return HTTP2Transport(
            verify=self.verify, limits=_limits(size), private_loop=private_loop
        )


def server_alpn(
    settings: Settings,
    verify: ssl.SSLContext | None = None,
    sessions: Sessions | None = None,
) -> str | None:
    """What an https server answers to an offer of HTTP/2 (flags2.tls.negotiated).

    None for plain http or a proxy, or when no handshake completed: either way
    the run goes without HTTP/2. Under ``--http1.1`` the probe offers HTTP/1.1
    alone, for its TLS session: it goes into `sessions` (which must serve
    `verify`), and the run's first burst of connections resumes it instead of
    each checking the certificate again.
    """
    https = settings.base_url.lower().startswith("https:")
    if not (https and _https_direct()):
        return None
    from flags2.tls import HTTP1_ONLY, negotiated

    context = verify if verify is not None else httpx.create_ssl_context()
    offer = None if settings.http2 else HTTP1_ONLY
    return negotiated(
        settings.base_url, context, settings.timeout, sessions, offer=offer
    )


def _https_direct() -> bool:
    """No proxy is named for https: it goes lean, or by flags2.h2transport.

    Through a proxy, httpx's own transport keeps HTTP/1.1.
    """
    proxies = getproxies()
    return "https" not in proxies and "all" not in proxies


class RefuseDowngrade:
    """A response hook: no redirect from https to plain http is followed.

    The same object serves a blocking and an async client: it checks when
    called, and what it returns is an awaitable that is already done (the
    async client awaits it, the blocking one ignores it).
    """

    def __call__(self, response: httpx.Response) -> _Done:
        if response.has_redirect_location and response.url.scheme == "https":
            try:
                target = response.url.join(response.headers["Location"])
            except httpx.InvalidURL:
                return _DONE  # httpx refuses it in its own words
            if target.scheme == "http":
                shown = target.copy_with(username=None, password=None, query=None)
                raise httpx.UnsupportedProtocol(
                    f"refused a redirect from https to plain http ({shown})",
                    request=response.request,
                )
        return _DONE


class _Done:
    """An awaitable that is done at once."""

    def __await__(self) -> Any:
        return iter(())


_DONE = _Done()


def _limits(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)
