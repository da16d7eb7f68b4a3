"""What happened to one flag, and the one place that sorts errors.

Every outcome of one download, an answer or an exception, becomes a
:class:`FlagResult` here, in the book's words::

    BR OK
    ZZ not found: http://localhost:8001/flags/zz/zz.gif
    XX error: HTTP error 418 - I'm a Teapot
    YY error: timed out <class 'httpx2.ReadTimeout'>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus

import httpx2 as httpx

from flags2.failures import Cause
from flags2.save import FlagProblem
from flags2.urls import flag_url, redact

__all__ = ["DownloadStatus", "FlagResult", "describe_error", "flag_url", "no_answer"]

# Failures where the server never answered: nothing connected, or it stayed
# silent. describe_error names the class last, so the text says which it was.
_NO_ANSWER = tuple(
    str(cls)
    for cls in (httpx.ConnectError, httpx.ProxyError, httpx.TimeoutException,
                httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
                httpx.PoolTimeout)
)  # fmt: skip


class DownloadStatus(Enum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"  # never started or abandoned on Ctrl-C
    SKIPPED = "SKIPPED"  # --skip-existing: already saved whole, not requested


@dataclass(frozen=True, slots=True)
class FlagResult:
    """The outcome of one code; times are ``time.perf_counter()`` readings."""

    cc: str
    status: DownloadStatus
    http_status: int | None = None
    bytes: int = 0
    attempts: int = 0
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None
    url: str = ""
    file: str | None = None
    """The file saved (or found whole and skipped) in the destination folder."""
    http_version: str | None = None
    """The protocol of the last answer: ``HTTP/1.1`` or ``HTTP/2``."""
    final_url: str | None = None
    """Where the last answer came from, when a redirect took the flag there."""
    cause: Cause | None = None
    """A failure every flag of the run would meet (see :mod:`flags2.failures`)."""
    connections: tuple[object, ...] = field(default=(), compare=False, repr=False)
    """The connections (httpcore's network streams) its answers came on."""

    @property
    def message(self) -> str:
        """The verbose line's text after the code, as the book prints it."""
        if self.status is DownloadStatus.OK:
            return "OK"
        if self.status is DownloadStatus.NOT_FOUND:
            return f"not found: {redact(self.url)}"
        if self.status is DownloadStatus.CANCELLED:
            return "cancelled"
        if self.status is DownloadStatus.SKIPPED:
            return f"skipped: {self.file} is already saved"
        return f"error: {self.error}"


def no_answer(result: FlagResult) -> bool:
    """True if `result` failed without any answer from the server.

    A failed TLS handshake is a ConnectError too, but something answered it.
    A failed ``metadata.json`` request counts too: its error says so first.
    """
    error = result.error or ""
    return (
        result.status is DownloadStatus.ERROR
        and result.http_status is None
        and error.endswith(_NO_ANSWER)
        and "[SSL" not in error
    )


def describe_error(exc: BaseException) -> str:
    """The book's error text: the status line for HTTP errors, else text and class."""
    if isinstance(exc, httpx.HTTPStatusError):
        resp = exc.response
        phrase = resp.reason_phrase or _standard_phrase(resp.status_code)
        return f"HTTP error {resp.status_code} - {phrase}"
    if isinstance(exc, FlagProblem):
        return str(exc)
    return f"{exc} {type(exc)}".strip()


def _standard_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""
