"""Every outcome of one download, through each of the three modes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import flags2
from flags2.status import DownloadStatus
from tests.helpers import RunFn, flag_bytes, leftovers, serve_flags


def test_ok_saves_the_exact_bytes(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR", "CN"])
    tracker = run_mode(["BR", "CN"])
    assert tracker.counter[DownloadStatus.OK] == 2
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")
    assert (dest / "CN.gif").read_bytes() == flag_bytes("CN")
    result = tracker.results["BR"]
    assert (result.http_status, result.bytes, result.attempts) == (
        200,
        len(flag_bytes("BR")),
        1,
    )
    assert result.started <= result.finished


def test_404_is_not_found_with_the_url(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    tracker = run_mode(["ZZ"])
    result = tracker.results["ZZ"]
    assert result.status is DownloadStatus.NOT_FOUND
    assert result.http_status == 404
    assert result.message == f"not found: {httpserver.url_for('/flags/zz/zz.gif')}"
    assert list(dest.iterdir()) == []


def test_418_is_an_error_in_the_books_words(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    httpserver.expect_request("/flags/br/br.gif").respond_with_response(
        Response(b"teapot", status="418 I'm a Teapot")
    )
    result = run_mode(["BR"]).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error == "HTTP error 418 - I'm a Teapot"
    assert result.http_status == 418


def test_500_is_an_error(httpserver: HTTPServer, run_mode: RunFn) -> None:
    httpserver.expect_request("/flags/br/br.gif").respond_with_data(b"oops", status=500)
    result = run_mode(["BR"]).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error == "HTTP error 500 - INTERNAL SERVER ERROR"


def test_503_with_retry_after_is_retried_after_the_wait(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    httpserver.expect_oneshot_request("/flags/br/br.gif").respond_with_data(
        b"busy", status=503, headers={"Retry-After": "1"}
    )
    serve_flags(httpserver, ["BR"])
    start = time.perf_counter()
    result = run_mode(["BR"], retries=2).results["BR"]
    assert result.status is DownloadStatus.OK
    assert result.attempts == 2
    assert time.perf_counter() - start >= 0.95  # Retry-After was honoured
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


def test_503_without_retries_is_one_attempt(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    httpserver.expect_request("/flags/br/br.gif").respond_with_data(
        b"busy", status=503, headers={"Retry-After": "1"}
    )
    result = run_mode(["BR"]).results["BR"]
    assert (result.status, result.attempts) == (DownloadStatus.ERROR, 1)
    assert result.error == "HTTP error 503 - SERVICE UNAVAILABLE"


def test_retries_give_up_after_n_plus_one_attempts(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    httpserver.expect_request("/flags/br/br.gif").respond_with_data(b"", status=418)
    result = run_mode(["BR"], retries=2).results["BR"]
    assert (result.status, result.attempts) == (DownloadStatus.ERROR, 3)
    assert len(httpserver.log) == 3


def test_404_is_never_retried(httpserver: HTTPServer, run_mode: RunFn) -> None:
    result = run_mode(["ZZ"], retries=3).results["ZZ"]
    assert (result.status, result.attempts) == (DownloadStatus.NOT_FOUND, 1)
    assert len(httpserver.log) == 1


def test_timeout_is_an_error_naming_the_exception(
    httpserver: HTTPServer, run_mode: RunFn
) -> None:
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(2)
        return Response(flag_bytes("BR"), content_type="image/gif")

    httpserver.expect_request("/flags/br/br.gif").respond_with_handler(slow)
    try:
        result = run_mode(["BR"], timeout=0.2).results["BR"]
    finally:
        release.set()
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "ReadTimeout" in result.error
    assert result.http_status is None


def test_refused_connection_is_an_error(
    run_mode: RunFn, closed_port: int, dest: Path
) -> None:
    tracker = run_mode(["BR", "CN"], base_url=f"http://127.0.0.1:{closed_port}/flags")
    assert tracker.counter[DownloadStatus.ERROR] == 2
    error = tracker.results["BR"].error
    assert error is not None and "ConnectError" in error
    assert list(dest.iterdir()) == []


def test_truncated_body_is_an_error_and_leaves_nothing(
    raw_server: Callable[[bytes], str], run_mode: RunFn, dest: Path
) -> None:
    body = flag_bytes("BR")
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    url = raw_server(head.encode() + body[: len(body) // 2])
    result = run_mode(["BR"], base_url=url).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error is not None and "RemoteProtocolError" in result.error
    assert list(dest.iterdir()) == []


def test_html_body_is_an_error_and_leaves_nothing(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    httpserver.expect_request("/flags/br/br.gif").respond_with_data(
        b"<html><body>Sorry</body></html>", content_type="text/html"
    )
    result = run_mode(["BR"]).results["BR"]
    assert result.status is DownloadStatus.ERROR
    assert result.error == "not a GIF: 31 bytes of text/html"
    assert result.http_status == 200
    assert list(dest.iterdir()) == []


def test_one_bad_flag_does_not_stop_the_others(
    httpserver: HTTPServer, run_mode: RunFn, dest: Path
) -> None:
    serve_flags(httpserver, ["BR", "CN"])
    httpserver.expect_request("/flags/in/in.gif").respond_with_data(b"", status=418)
    tracker = run_mode(["BR", "CN", "IN", "ZZ"])
    counts = {s: tracker.counter[s] for s in DownloadStatus}
    assert counts == {
        DownloadStatus.OK: 2,
        DownloadStatus.NOT_FOUND: 1,
        DownloadStatus.ERROR: 1,
        DownloadStatus.CANCELLED: 0,
        DownloadStatus.SKIPPED: 0,
    }
    assert sorted(p.name for p in dest.iterdir()) == ["BR.gif", "CN.gif"]
    assert leftovers(dest) == []


@pytest.mark.parametrize("mode", ["asyncio"])
@pytest.mark.parametrize("retries", [0, 1])
def test_failed_requests_leave_the_event_loop_no_generator_to_close(
    httpserver: HTTPServer,
    run_mode: RunFn,
    retries: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 404 raises out of its attempts loop. An async generator left there
    # unfinished is closed by the loop's finalizer hook, through
    # call_soon_threadsafe: a write to the loop's self-pipe and a task, per
    # failed request (482 of them in an -e run). With --retries, tenacity's
    # own async iterator: it must stay one that leaves nothing either.
    ours = str(Path(flags2.__file__).parent)
    closed: list[str] = []
    real = sys.set_asyncgen_hooks

    def counting_hooks(*args: Any, **kwargs: Any) -> None:
        names = ("firstiter", "finalizer")
        hooks = {**dict(zip(names, args, strict=False)), **kwargs}
        finalizer = hooks.get("finalizer")
        if finalizer is not None:

            def counted(agen: Any, inner: Any = finalizer) -> None:
                if agen.ag_code.co_filename.startswith(ours):
                    closed.append(agen.__qualname__)
                inner(agen)

            hooks["finalizer"] = counted
        real(**hooks)

    monkeypatch.setattr(sys, "set_asyncgen_hooks", counting_hooks)
    tracker = run_mode(["ZX", "ZY", "ZZ"], retries=retries)
    assert {r.status for r in tracker.results.values()} == {DownloadStatus.NOT_FOUND}
    assert closed == []
