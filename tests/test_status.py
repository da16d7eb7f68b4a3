from __future__ import annotations

import httpx2 as httpx
import pytest

from flags2.save import BadFlag
from flags2.status import (
    DownloadStatus,
    FlagResult,
    describe_error,
    flag_url,
    no_answer,
)


def test_flag_url_lowers_the_code_only() -> None:
    assert (
        flag_url("http://localhost:8000/Data/Flags", "BR")
        == "http://localhost:8000/Data/Flags/br/br.gif"
    )


def test_not_found_lines_hide_the_password() -> None:
    url = "http://user:S3cret@x/flags/zz/zz.gif"
    result = FlagResult("ZZ", DownloadStatus.NOT_FOUND, 404, url=url)
    assert result.message == "not found: http://user:***@x/flags/zz/zz.gif"


@pytest.mark.parametrize(
    ("exc", "silent"),
    [
        (httpx.ConnectError("All connection attempts failed"), True),
        (httpx.ConnectTimeout("timed out"), True),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ProxyError("502 from the proxy"), True),
        (httpx.ReadError("connection reset"), False),  # something answered
        (httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version"), False),
        (httpx.RemoteProtocolError("bad head"), False),
    ],
)
def test_no_answer_is_a_failure_to_connect_or_a_timeout(
    exc: Exception, silent: bool
) -> None:
    result = FlagResult("BR", DownloadStatus.ERROR, error=describe_error(exc))
    assert no_answer(result) is silent


def test_an_http_status_is_an_answer() -> None:
    err = describe_error(_status_error(503, b""))
    assert not no_answer(FlagResult("BR", DownloadStatus.ERROR, 503, error=err))


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
