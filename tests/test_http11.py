"""The lean transports against unusual, malformed and hostile answers.

Each answer is served by a raw-socket server on loopback, to every mode, and
to httpx2's own transport: flags2 never accepts what httpx2 rejects, never
saves a wrong or incomplete flag, and says why in httpx's own classes.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools
import httpx2 as httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from flags2.http11 import MAX_BODY, MAX_HEAD, Answer
from flags2.status import DownloadStatus
from tests.helpers import Answers, KeptAlive, RunFn, Script, flag_bytes

GIF = flag_bytes("BR")
OTHER = flag_bytes("CN")
CUT = GIF[: len(GIF) // 2]


def _ok(body: bytes = GIF, head: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"HTTP/%s 200 OK\r\nContent-Type: image/gif\r\n%sContent-Length: %d\r\n\r\n"
        % (version, head, len(body))
        + body
    )


def _chunked(
    body: bytes, size: int = 1000, ext: bytes = b"", end: bytes = b""
) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    chunks = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts)
    return chunks + b"0\r\n" + end + b"\r\n"


_TE = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nTransfer-Encoding: chunked\r\n"
_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nConnection: close\r\n"

# (id, the raw answer, what every mode must make of it)
CASES: list[tuple[str, bytes, str]] = [
    # -- well-formed answers: the exact flag ----------------------------------
    ("content-length", _ok(), "ok"),
    ("chunked", _TE + b"\r\n" + _chunked(GIF), "ok"),
    ("chunked-one-byte-chunks", _TE + b"\r\n" + _chunked(GIF[:40], 1)[:-5]
     + _chunked(GIF[40:]), "ok"),
    ("chunk-extensions", _TE + b"\r\n" + _chunked(GIF, ext=b';name=value'), "ok"),
    ("trailers", _TE + b"\r\n" + _chunked(GIF, end=b"X-Sum: 1\r\nX-Two: 2\r\n"),
     "ok"),
    ("until-close", _CLOSE + b"\r\n" + GIF, "ok"),
    ("until-close-no-connection-header",
     b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n\r\n" + GIF, "ok"),
    ("http-1.0", b"HTTP/1.0 200 OK\r\nContent-Type: image/gif\r\n\r\n" + GIF, "ok"),
    ("http-1.0-content-length", _ok(version=b"1.0"), "ok"),
    ("100-continue", b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(), "ok"),
    ("two-102s", b"HTTP/1.1 102 Processing\r\n\r\n" * 2 + _ok(), "ok"),
    ("quoted-chunk-extension", _TE + b"\r\n" + _chunked(GIF, ext=b';a="b c"'), "ok"),
    ("chunk-size-upper-case", _TE + b"\r\n" + _chunked(GIF).replace(b"3e8", b"3E8"),
     "ok"),
    ("te-chunked-any-case", _TE.replace(b"chunked", b"Chunked") + b"\r\n"
     + _chunked(GIF), "ok"),
    ("103-with-headers", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + _ok(),
     "ok"),
    ("lower-case-names", _ok(head=b"x-lower: yes\r\n").replace(
        b"Content-Length", b"content-length"), "ok"),
    ("empty-reason", _ok().replace(b"200 OK", b"200 "), "ok"),
    ("long-reason", _ok().replace(b"200 OK", b"200 Very Fine Indeed"), "ok"),
    ("spaces-around-value", _ok(head=b"X-Pad:    padded   \r\n"), "ok"),
    ("empty-value", _ok(head=b"X-Empty:\r\n"), "ok"),
    ("gzip-encoded", b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"
     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
     % len(gzip.compress(GIF)) + gzip.compress(GIF), "ok"),
    ("many-headers", _ok(head=b"".join(b"X-%d: v\r\n" % i for i in range(90))),
     "ok"),
    ("lf-only-head", _ok(b"").replace(b"\r\n", b"\n").replace(b": 0", b": %d"
     % len(GIF)) + GIF, "ok"),
    ("status-without-reason", _ok().replace(b"200 OK", b"200"), "ok"),
    ("length-leading-zero", _ok().replace(b"Length: ", b"Length: 0"), "ok"),
    ("tab-in-value", _ok(head=b"X-Tab: a\tb\r\n"), "ok"),
    ("utf8-in-value", _ok(head="X-Name: Côte d'Ivoire\r\n".encode()), "ok"),
    ("http-1.0-keep-alive", _ok(head=b"Connection: keep-alive\r\n",
     version=b"1.0"), "ok"),
    # -- header fields that are not valid -------------------------------------
    ("nul-in-value", _ok(head=b"X-Bad: a\0b\r\n"), "error"),
    ("bare-cr-in-value", _ok(head=b"X-Bad: a\rb\r\n"), "error"),
    ("space-in-name", _ok(head=b"Bad Name: x\r\n"), "error"),
    ("paren-in-name", _ok(head=b"X(y): z\r\n"), "error"),
    ("space-before-colon", _ok(head=b"X-Bad : z\r\n"), "error"),
    ("no-colon", _ok(head=b"NoColonHere\r\n"), "error"),
    ("empty-name", _ok(head=b": nameless\r\n"), "error"),
    ("control-in-value", _ok(head=b"X-Bad: a\x01b\r\n"), "error"),
    ("del-in-value", _ok(head=b"X-Bad: a\x7fb\r\n"), "error"),
    ("space-before-first-name", _ok().replace(b"OK\r\n", b"OK\r\n X-A: 1\r\n"),
     "error"),
    # Folded lines are obsolete; llhttp refuses them, h11 unfolds them.
    ("obs-fold", _ok(head=b"X-A: a\r\n  b\r\n"), "error"),
    ("obs-fold-first-line", b"HTTP/1.1 200 OK\r\n  folded\r\n" + _ok()[17:],
     "error"),
    # -- status lines ---------------------------------------------------------
    ("status-cr-cr-lf", _ok().replace(b"200 OK\r\n", b"200 OK\r\r\n"), "error"),
    ("not-http", b"SPDY/9 200 OK\r\n\r\n", "error"),
    ("four-digit-status", _ok().replace(b"200", b"2000", 1), "error"),
    ("two-digit-status", _ok().replace(b"200", b"20", 1), "error"),
    ("http-2-status-line", _ok().replace(b"HTTP/1.1", b"HTTP/2", 1), "error"),
    ("garbage", b"hello\r\n\r\n", "error"),
    ("blank-line-first", b"\r\n" + _ok(), "error"),
    ("lower-case-http", _ok().replace(b"HTTP/1.1", b"http/1.1"), "error"),
    ("http-1.2", _ok().replace(b"HTTP/1.1", b"HTTP/1.2"), "error"),
    ("two-spaces-before-status", _ok().replace(b"1.1 200", b"1.1  200"), "error"),
    ("no-answer", b"", "error"),
    ("head-cut-short", b"HTTP/1.1 200 OK\r\nContent-Type: ima", "error"),
    ("switching-protocols", b"HTTP/1.1 101 Switching Protocols\r\n"
     b"Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n" + GIF, "error"),
    # -- Content-Length -------------------------------------------------------
    ("length-not-a-number", _ok().replace(b"Length: %d" % len(GIF), b"Length: x"),
     "error"),
    ("length-negative", _ok().replace(b"Length: %d" % len(GIF), b"Length: -1"),
     "error"),
    ("length-huge", _ok().replace(b"Length: %d" % len(GIF), b"Length: " + b"9" * 40),
     "error"),
    ("length-conflicting-twice", _ok(head=b"Content-Length: 7\r\n"), "error"),
    # RFC 9110 lets a recipient take identical copies; llhttp does not.
    ("length-same-twice", _ok(head=b"Content-Length: %d\r\n" % len(GIF)), "error"),
    ("length-plus-sign", _ok().replace(b"Length: ", b"Length: +"), "error"),
    ("length-and-te-identity", _ok(head=b"Transfer-Encoding: identity\r\n"),
     "error"),
    ("length-and-chunked", _TE + b"Content-Length: 10\r\n\r\n" + _chunked(GIF),
     "error"),
    ("length-cut-short", _ok()[:-100], "error"),
    ("length-of-a-cut-file", _ok(CUT), "error"),
    ("length-over-the-cap", b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
     % (MAX_BODY + 1) + GIF, "error"),
    # -- Transfer-Encoding lists ----------------------------------------------
    ("te-x-foo-chunked", _TE.replace(b"chunked", b"x-foo, chunked") + b"\r\n"
     + _chunked(GIF), "error"),
    ("te-chunked-twice", _TE.replace(b"chunked", b"chunked, chunked") + b"\r\n"
     + _chunked(GIF), "error"),
    ("te-two-headers", _TE + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(GIF),
     "error"),
    ("te-gzip-only", _TE.replace(b"chunked", b"gzip") + b"\r\n" + GIF, "error"),
    ("te-chunked-gzip", _TE.replace(b"chunked", b"chunked, gzip") + b"\r\n"
     + _chunked(GIF), "error"),
    # -- chunks and trailers --------------------------------------------------
    ("chunk-size-negative", _TE + b"\r\n-1\r\n", "error"),
    ("chunk-size-0x", _TE + b"\r\n0x6\r\n", "error"),
    ("chunk-size-not-hex", _TE + b"\r\nzz\r\n", "error"),
    ("space-before-chunk-size", _TE + b"\r\n " + _chunked(GIF), "error"),
    ("chunk-lines-lf-only", _TE + b"\r\n" + _chunked(GIF).replace(b"\r\n", b"\n"),
     "error"),
    ("space-before-chunk-extension", _TE + b"\r\n" + _chunked(GIF, ext=b" ;a=b"),
     "error"),
    ("chunk-without-crlf", _TE + b"\r\n%x\r\n" % len(GIF) + GIF + b"0\r\n\r\n",
     "error"),
    ("chunk-cut-short", _TE + b"\r\n10\r\nGIF89a", "error"),
    ("chunks-without-last-chunk", _TE + b"\r\n" + _chunked(GIF)[:-5], "error"),
    ("chunks-of-a-cut-file", _TE + b"\r\n" + _chunked(CUT), "error"),
    ("trailer-without-colon", _TE + b"\r\n" + _chunked(GIF, end=b"junk\r\n"),
     "error"),
    ("trailer-bad-name", _TE + b"\r\n" + _chunked(GIF, end=b"X Y: 1\r\n"), "error"),
    ("trailer-space-before-colon", _TE + b"\r\n" + _chunked(GIF, end=b"X : 1\r\n"),
     "error"),
    ("trailer-obs-fold", _TE + b"\r\n" + _chunked(GIF, end=b"X: 1\r\n 2\r\n"),
     "error"),
    ("trailer-cut-short", _TE + b"\r\n" + _chunked(GIF, end=b"X-A: 1\r\n")[:-2],
     "error"),
    # -- bodies that are not a whole flag -------------------------------------
    ("until-close-cut-short", _CLOSE + b"\r\n" + CUT, "error"),
    ("until-close-empty", _CLOSE + b"\r\n", "error"),
    ("html-page", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
     b"Content-Length: 13\r\n\r\n<html></html>", "error"),
    ("gif-then-junk", _ok(GIF + b"trailing junk"), "error"),
    ("204-with-body", _ok().replace(b"200 OK", b"204 No Content"), "error"),
    ("304-with-body", _ok().replace(b"200 OK", b"304 Not Modified"), "error"),
    ("server-error", b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "error"),
    ("gzip-cut-short", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
     b"Content-Length: %d\r\n\r\n" % len(gzip.compress(GIF)[:-20])
     + gzip.compress(GIF)[:-20], "error"),
    # -- bounds ---------------------------------------------------------------
    ("head-over-the-cap", _ok(head=b"X-Big: " + b"a" * (MAX_HEAD + 10) + b"\r\n"),
     "error"),
    ("too-many-fields", _ok(head=b"".join(b"X-%d: v\r\n" % i for i in range(300))),
     "error"),
]  # fmt: skip

_IDS = [case[0] for case in CASES]


def _httpx2_outcome(url: str) -> str:
    """What httpx2's own transport makes of an answer: ok, or why not."""
    try:
        with httpx.Client(timeout=2) as client:
            resp = client.get(url + "/br/br.gif")
            resp.raise_for_status()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "ok" if resp.content == GIF else "not the flag"


@pytest.mark.parametrize(("name", "answer", "expected"), CASES, ids=_IDS)
def test_every_mode_makes_the_expected_thing_of_each_answer(
    raw_server: Callable[[bytes], str],
    run_mode: RunFn,
    dest: Path,
    name: str,
    answer: bytes,
    expected: str,
) -> None:
    result = run_mode(["BR"], base_url=raw_server(answer), timeout=2.0).results["BR"]
    if expected == "ok":
        assert (result.status, result.error) == (DownloadStatus.OK, None)
        assert (dest / "BR.gif").read_bytes() == GIF
    else:
        assert result.status is DownloadStatus.ERROR, result
        assert result.error and "Traceback" not in result.error
        assert list(dest.iterdir()) == []  # no flag, no temporary file


@pytest.mark.parametrize(("name", "answer", "expected"), CASES, ids=_IDS)
def test_nothing_httpx2_rejects_is_accepted(
    raw_server: Callable[[bytes], str], name: str, answer: bytes, expected: str
) -> None:
    # The table above must never expect a flag where httpx2's own transport
    # (h11 under httpcore2) refuses the answer or gets another body.
    outcome = _httpx2_outcome(raw_server(answer))
    if outcome != "ok":
        assert expected == "error", f"httpx2: {outcome}"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "Server disconnected without sending a response."),
        (b"SPDY/9 200 OK\r\n\r\n", "malformed response"),
        (_ok().replace(b"Length: %d" % len(GIF), b"Length: x"), "Content-Length"),
        (_TE + b"\r\n0x6\r\n", "chunk size"),
        (_ok()[:-100], f"expected {len(GIF)}"),
        (_TE + b"\r\n" + _chunked(GIF)[:-5], "complete message body"),
        (_TE.replace(b"chunked", b"x-foo, chunked") + b"\r\n", "Transfer-Encoding"),
        (_CLOSE + b"\r\n" + CUT, "incomplete GIF"),
    ],
    ids=["no-answer", "status", "length", "chunk-size", "length-cut",
         "chunked-cut", "te-list", "gif-cut"],
)  # fmt: skip
def test_errors_say_why_in_httpx_words(
    raw_server: Callable[[bytes], str], run_mode: RunFn, answer: bytes, message: str
) -> None:
    result = run_mode(["BR"], base_url=raw_server(answer), timeout=2.0).results["BR"]
    assert result.error is not None and message in result.error
    if "GIF" not in message:
        assert "RemoteProtocolError" in result.error


# -- time: --timeout bounds a whole head and every gap in a body ---------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "steps",
    [
        # A head that trickles in, each line inside the timeout.
        [(0, b"HTTP/1.1 200 OK\r\n")] + [(0.2, b"X-Slow: 1\r\n")] * 30,
        # A chunked body whose trailer section never ends.
        [(0, _TE + b"\r\n" + _chunked(GIF)[:-2])] + [(0.2, b"X-T: 1\r\n")] * 30,
        # A status line that never comes.
        [(10, b"")],
    ],
    ids=["trickling-head", "endless-trailer", "silent"],
)
def test_a_stalling_answer_ends_within_the_timeout(
    scripted: Script, run_mode: RunFn, dest: Path, steps: list[tuple[float, bytes]]
) -> None:
    result = run_mode(["BR"], base_url=scripted(steps), timeout=0.5).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ReadTimeout" in result.error
    # Wide margin: the point is that it ends (6 s of steps), not how fast.
    assert result.finished - result.started < 3.0
    assert list(dest.iterdir()) == []


def test_a_slow_body_that_keeps_coming_is_not_a_timeout(
    scripted: Script, run_mode: RunFn, dest: Path
) -> None:
    # Every gap (0.1 s) is far under the timeout, the whole (1.2 s) over it.
    body = _ok()
    steps = [(0, body[:200])] + [
        (0.1, body[i : i + 1000]) for i in range(200, len(body), 1000)
    ]
    result = run_mode(["BR"], base_url=scripted(steps), timeout=1.0).results["BR"]
    assert result.status is DownloadStatus.OK
    assert (dest / "BR.gif").read_bytes() == GIF


def test_a_body_over_the_cap_is_refused_without_being_kept(
    scripted: Script, run_mode: RunFn, dest: Path
) -> None:
    # Until close, no length announced: the cap stops it as it comes.
    head = _CLOSE + b"\r\n" + GIF
    steps = [(0.0, head)] + [(0.0, bytes(1 << 20))] * 12
    result = run_mode(["BR"], base_url=scripted(steps), timeout=2.0).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "over" in result.error
    assert list(dest.iterdir()) == []


# -- keep-alive: a connection is reused only after a clean end -----------------

_BR, _CN = _ok(GIF), _ok(OTHER)


@pytest.mark.parametrize(
    ("first", "reused"),
    [
        ([(0, _BR)], True),
        ([(0, _BR + _ok(OTHER))], False),  # an unsolicited second answer
        ([(0, _BR + b"junk")], False),
        ([(0, _BR + b"HTTP/1.1 408 Request Timeout\r\n\r\n")], False),
        ([(0, _BR), (0, b"")], False),  # closed after answering: stale
        ([(0, _BR.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n"))], False),
        ([(0, _TE + b"\r\n" + _chunked(GIF) + b"X")], False),
    ],
    ids=["clean", "second-answer", "junk", "stray-408", "stale", "close", "chunk+1"],
)
def test_a_connection_is_reused_only_if_the_answer_ended_cleanly(
    kept_alive: Callable[[Answers], KeptAlive],
    run_mode: RunFn,
    dest: Path,
    first: list[tuple[float, bytes]],
    reused: bool,
) -> None:
    # BR first, then CN: a leftover read as CN's answer would save BR's bytes
    # (or the 408) under CN's name.
    server = kept_alive([first, [(0.0, _CN)], [(0.0, _CN)]])
    tracker = run_mode(["BR", "CN"], base_url=server.url, concurrency=1)
    assert tracker.counter[DownloadStatus.OK] == 2, tracker.results
    assert (dest / "BR.gif").read_bytes() == GIF
    assert (dest / "CN.gif").read_bytes() == OTHER
    connections = {number for number, _ in server.requests}
    assert len(connections) == (1 if reused else 2)
    assert [target for _, target in server.requests][-1] == b"/flags/cn/cn.gif"


def test_the_parser_stops_on_the_last_byte_of_the_answer() -> None:
    answer = Answer()
    answer.feed(_BR[:100])
    assert not answer.complete
    answer.feed(_BR[100:])
    assert (answer.complete, answer.reusable, bytes(answer.body)) == (True, True, GIF)
    answer.feed(b"late")  # anything more: never reused
    assert answer.reusable is False
    glued = Answer()
    glued.feed(_BR + _CN)
    assert (glued.reusable, bytes(glued.body)) == (False, GIF)


# -- httptools: the floor, and only documented behaviour -----------------------

# The first httptools with everything Answer calls: set_dangerous_leniencies
# arrived in 0.6.3 (with 0.6.1 and 0.6.2 every flag fails, AttributeError).
_FIRST_GOOD_HTTPTOOLS = Version("0.6.3")
_PARSER_METHODS = (
    "feed_data",
    "get_http_version",
    "get_status_code",
    "set_dangerous_leniencies",
    "should_keep_alive",
)


def test_the_httptools_floor_has_everything_the_parser_calls() -> None:
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (declared,) = [r for r in map(Requirement, dependencies) if r.name == "httptools"]
    floors = [Version(s.version) for s in declared.specifier if s.operator == ">="]
    assert floors and min(floors) >= _FIRST_GOOD_HTTPTOOLS, declared
    installed = importlib.metadata.version("httptools")
    assert declared.specifier.contains(installed), (installed, str(declared))
    parser = httptools.HttpResponseParser(Answer())
    missing = [name for name in _PARSER_METHODS if not hasattr(parser, name)]
    assert missing == [], f"httptools {installed} lacks {missing}"


class _ParserWithoutContext:
    """httptools' parser, but its callback errors carry no ``__context__``."""

    def __init__(self, protocol: Any) -> None:
        self._parser = _REAL_PARSER(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def feed_data(self, data: Any) -> None:
        try:
            self._parser.feed_data(data)
            return
        except httptools.HttpParserCallbackError as exc:
            error = httptools.HttpParserCallbackError(*exc.args)
        raise error  # outside the handler: no __context__ at all


_REAL_PARSER = httptools.HttpResponseParser


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (_BR, "reusable"),
        (_BR + b"junk", "complete"),  # stopped on its last byte, junk unread
        (_TE + b"\r\n" + _chunked(GIF), "reusable"),
        (_ok(head=b"".join(b"X-%d: v\r\n" % i for i in range(300))), "fields"),
        (_TE.replace(b"chunked", b"gzip") + b"\r\n" + GIF, "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), "over"),
    ],
    ids=["clean", "junk-after", "chunked", "too-many-fields", "te-gzip", "too-big"],
)
def test_why_the_parser_stopped_is_known_without_the_exception_context(
    monkeypatch: pytest.MonkeyPatch, answer: bytes, outcome: str
) -> None:
    # httptools sets HttpParserCallbackError.__context__ by hand, undocumented:
    # the end of an answer, and our own errors, must not depend on it.
    monkeypatch.setattr(httptools, "HttpResponseParser", _ParserWithoutContext)
    parsed = Answer()
    if outcome in ("reusable", "complete"):
        parsed.feed(answer)
        assert parsed.complete and bytes(parsed.body) == GIF
        assert parsed.reusable is (outcome == "reusable")
    else:
        with pytest.raises(httpx.RemoteProtocolError, match=outcome):
            parsed.feed(answer)
