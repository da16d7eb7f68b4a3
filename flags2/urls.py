"""Base URLs and proxies: checked once, used as given, never shown with a password.

A base URL is used exactly as the user typed it; only the ``{cc}/{cc}.gif``
part added to it is lower case (the book lower-cases the whole string, which
is harmless only on its own servers)::

    >>> flag_url("http://user:S3cret@Host/Data/Flags", "BR")
    'http://user:S3cret@Host/Data/Flags/br/br.gif'
    >>> redact("http://user:S3cret@Host/Data/Flags")
    'http://user:***@Host/Data/Flags'

Everything that prints or records a URL (reports, hints, ``--json``, error
lines) shows it through :func:`redact`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit
from urllib.request import getproxies, proxy_bypass

__all__ = [
    "PROXY_VARIABLES",
    "BadURL",
    "check_base_url",
    "check_proxies",
    "flag_url",
    "metadata_url",
    "redact",
    "run_proxy",
]

# The variables httpx reads (either case); others, like FTP_PROXY, it ignores.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


class BadURL(ValueError):
    """A URL that cannot be used; the message says why in a few words."""


def flag_url(base_url: str, cc: str) -> str:
    cc = cc.lower()
    return f"{base_url}/{cc}/{cc}.gif"


def metadata_url(base_url: str, cc: str) -> str:
    """Where the book's flags3 finds a country's name: ``{cc}/metadata.json``."""
    return f"{base_url}/{cc.lower()}/metadata.json"


def check_base_url(url: str) -> str:
    """`url` as a base for flag URLs (no trailing slash), or BadURL saying why."""
    parts = _split(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadURL("not an http(s):// base URL")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        # flag_url appends to the path: a query would end up before it.
        raise BadURL("a base URL cannot have a query (?) or a fragment (#)")
    return url.rstrip("/")


def check_proxies(environ: Mapping[str, str] | None = None) -> None:
    """BadURL, naming the variable, for a proxy setting httpx cannot use."""
    environ = os.environ if environ is None else environ
    schemes = ["http", "https"]
    if importlib.util.find_spec("socksio") is not None:  # httpx's socks extra
        schemes += ["socks5", "socks5h"]
    for name, value in sorted(environ.items()):
        if name.lower() not in PROXY_VARIABLES or not value:
            continue
        # httpx reads a bare "host:port" as http://host:port.
        proxy = value if "://" in value else f"http://{value}"
        try:
            parts = _split(proxy)
        except BadURL as exc:
            raise BadURL(f"{name}={redact(value)!r}: {exc}") from None
        if parts.scheme.lower() not in schemes:
            raise BadURL(
                f"{name}={redact(value)!r}: proxy scheme {parts.scheme!r} is not"
                f" supported (use {', '.join(schemes)}, or unset {name})"
            )
        if not parts.hostname:
            raise BadURL(f"{name}={redact(value)!r}: no proxy host")


def run_proxy(base_url: str) -> str | None:
    """The proxy the environment names for `base_url`, redacted; None if none."""
    proxies = getproxies()
    scheme = urlsplit(base_url).scheme.lower()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    host = urlsplit(base_url).hostname or ""
    if proxy_bypass(host):  # NO_PROXY
        return None
    return redact(proxy)


def redact(url: str) -> str:
    """`url` with any password shown as ``***``; works on malformed URLs too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hostport}{rest[end:]}"


def _split(url: str) -> SplitResult:
    """urlsplit, with every malformed part (host, IPv6 literal, port) a BadURL."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise BadURL("spaces or control characters in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise BadURL(f"malformed host or port ({exc})") from None
    if port == 0:
        raise BadURL("port 0 cannot be connected to")
    return parts
