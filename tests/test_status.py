from __future__ import annotations

import httpx2 as httpx

from flags2.save import BadFlag
from flags2.status import DownloadStatus, FlagResult, describe_error, flag_url


def test_flag_url_is_lower_case() -> None:
    assert (
        flag_url("http://localhost:8000/flags", "BR")
        == "http://localhost:8000/flags/br/br.gif"
    )


def _status_error(code: int, reason: bytes) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://x/flags/br/br.gif")
    response = httpx.Response(
        code, request=request, extensions={"reason_phrase": reason}
    )
    return httpx.HTTPStatusError("boom", request=request, response=response)


def test_http_errors_use_the_status_line() -> None:
    assert (
        describe_error(_status_error(418, b"I'm a Teapot"))
        == "HTTP error 418 - I'm a Teapot"
    )


def test_http_errors_without_reason_use_the_standard_phrase() -> None:
    assert (
        describe_error(_status_error(503, b""))
        == "HTTP error 503 - Service Unavailable"
    )
    assert describe_error(_status_error(599, b"")) == "HTTP error 599 - "


def test_request_errors_show_text_and_class() -> None:
    exc = httpx.ConnectError("All connection attempts failed")
    assert describe_error(exc) == f"All connection attempts failed {httpx.ConnectError}"


def test_bad_flag_shows_its_text() -> None:
    assert describe_error(BadFlag("not a GIF: 3 bytes of text/html")) == (
        "not a GIF: 3 bytes of text/html"
    )


def test_messages_are_the_books_verbose_lines() -> None:
    url = "http://x/flags/zz/zz.gif"
    assert FlagResult("BR", DownloadStatus.OK, url=url).message == "OK"
    assert (
        FlagResult("ZZ", DownloadStatus.NOT_FOUND, url=url).message
        == f"not found: {url}"
    )
    err = FlagResult("XX", DownloadStatus.ERROR, error="HTTP error 418 - I'm a Teapot")
    assert err.message == "error: HTTP error 418 - I'm a Teapot"
