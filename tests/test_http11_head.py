"""The request head flags2 writes is the one h11 wrote, checks and errors included.

h11 is no dependency of flags2 any more (httpx2's own transport still uses
it, so it is installed): these tests hold the writer to it, byte for byte,
for what a run sends and for what h11 refuses.
"""

from __future__ import annotations

import h11
import httpx2 as httpx
import pytest

from flags2.http11 import request_head

_URLS = [
    "http://localhost:8000/flags/br/br.gif",
    "http://127.0.0.1:8001/flags/cn/metadata.json",
    "http://[::1]:8002/flags/",
    "http://example.com/",  # the default port: no port in Host
    "http://example.com:80/a",
    "http://straße.example/flags/de/de.gif",  # IDNA 2008: xn--strae-oqa
    "http://bücher.example:8080/x?q=1&r=%20",
    "http://example.com/a b/ç?x=ü",  # escaped by httpx
    "http://example.com/path?",
    "http://user:pw@example.com/secret",  # userinfo: never in the head
    "http://example.com/p#fragment",  # a fragment: never sent
]

_EXTRA: list[dict[str, str]] = [
    {},
    {"User-Agent": "flags2/0.1.0"},
    {"X-Token": "a b\tc", "Accept": "image/gif, */*;q=0.1"},
    {"Host": "other.example"},  # the caller's Host replaces httpx's
    {"x-lower": "v", "X-UPPER": "V", "X-Empty": ""},
    {"Content-Length": "0"},
    {"Content-Length": "5, 5"},  # h11 merges equal values
    {"Transfer-Encoding": "Chunked"},  # h11 writes it lower case
]


def _h11_head(request: httpx.Request) -> bytes:
    data = h11.Connection(h11.CLIENT).send(
        h11.Request(
            method=request.method,
            target=request.url.raw_path,
            headers=request.headers.raw,
        )
    )
    assert data is not None
    return data


@pytest.mark.parametrize("url", _URLS)
@pytest.mark.parametrize("extra", _EXTRA, ids=lambda extra: ",".join(extra) or "none")
def test_head_is_what_h11_writes(url: str, extra: dict[str, str]) -> None:
    request = httpx.Request("GET", url, headers=extra)
    assert request_head(request) == _h11_head(request)
    # The second time comes from the cache of header blocks: still the same.
    assert request_head(request) == _h11_head(request)


def test_obs_text_as_h11_writes_it() -> None:
    request = httpx.Request("GET", "http://localhost/", headers={b"X-Obs": b"caf\xe9"})
    assert request_head(request) == _h11_head(request)
    assert b"X-Obs: caf\xe9\r\n" in request_head(request)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "X-CUSTOM.1"])
def test_methods_as_h11_writes_them(method: str) -> None:
    request = httpx.Request(method, "http://localhost:8000/flags/")
    assert request_head(request) == _h11_head(request)


def test_host_is_first_as_h11_puts_it() -> None:
    request = httpx.Request("GET", "http://localhost:8000/")
    request.headers = httpx.Headers([("Accept", "*/*"), ("Host", "localhost:8000")])
    head = request_head(request)
    assert head == _h11_head(request)
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nAccept: */*\r\n")


def _refusal(request: httpx.Request) -> str:
    with pytest.raises(h11.LocalProtocolError) as refused:
        _h11_head(request)
    return str(refused.value)


@pytest.mark.parametrize(
    "headers",
    [
        [("Host", "a"), ("Bad Name", "v")],
        [("Host", "a"), ("X", "line\r\nInjected: 1")],
        [("Host", "a"), ("X", " leading")],
        [("Host", "a"), ("X", "trailing ")],
        [("Host", "a"), ("X", "nul\x00")],
        [("Host", "a"), ("", "empty name")],
        [("Accept", "*/*")],  # no Host
        [("Host", "a"), ("Host", "b")],
        [("Host", "a"), ("Content-Length", "5, 6")],
        [("Host", "a"), ("Content-Length", "5"), ("Content-Length", "6")],
        [("Host", "a"), ("Content-Length", "-1")],
        [("Host", "a"), ("Content-Length", "1" * 21)],
        [("Host", "a"), ("Transfer-Encoding", "gzip")],
        [("Host", "a"), ("Transfer-Encoding", "chunked")] * 2,
    ],
)
def test_refuses_what_h11_refuses_in_its_words(headers: list[tuple[str, str]]) -> None:
    request = httpx.Request("GET", "http://localhost:8000/")
    request.headers = httpx.Headers(headers)
    expected = _refusal(request)
    with pytest.raises(httpx.LocalProtocolError) as refused:
        request_head(request)
    assert str(refused.value) == expected


@pytest.mark.parametrize("method", ["GE T", "GET\r\n", "(GET)"])
def test_refuses_a_method_h11_refuses(method: str) -> None:
    request = httpx.Request(method, "http://localhost:8000/")
    expected = _refusal(request)
    with pytest.raises(httpx.LocalProtocolError, match=r"^Illegal method characters$"):
        request_head(request)
    assert expected == "Illegal method characters"
