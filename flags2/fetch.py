"""Downloading one flag: request, retries, checks, save, and a verdict.

The blocking and the async ``download_one`` are the same few lines, one with
``await``; everything after the last answer (sorting errors, checking and
saving the body) is shared in :func:`_verdict`.

Retries use tenacity (the same policy object drives ``Retrying`` and
``AsyncRetrying``); httpx-retries was considered and not used because it retries
inside the transport, before the body is read, so it can neither retry a
truncated body nor count the attempts a flag took.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx2 as httpx

from flags2.save import Saver, check_flag
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult, describe_error, flag_url

if TYPE_CHECKING:
    import tenacity

__all__ = ["RETRY_STATUSES", "download_one", "download_one_async", "is_transient"]

RETRY_STATUSES = frozenset({408, 418, 429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 10.0  # seconds; a server asking for longer is not waited on


def download_one(
    client: httpx.Client, cc: str, settings: Settings, saver: Saver
) -> FlagResult:
    url = flag_url(settings.base_url, cc)
    started = time.perf_counter()
    attempts = 0
    resp: httpx.Response | None = None
    try:
        for attempt in _attempts(settings):
            with attempt:
                attempts += 1
                resp = None  # a transport error must not report the last status
                resp = client.get(url)
                resp.raise_for_status()
    except Exception as exc:
        return _verdict(cc, url, started, attempts, resp, exc, saver)
    return _verdict(cc, url, started, attempts, resp, None, saver)


async def download_one_async(
    client: httpx.AsyncClient, cc: str, settings: Settings, saver: Saver
) -> FlagResult:
    url = flag_url(settings.base_url, cc)
    started = time.perf_counter()
    attempts = 0
    resp: httpx.Response | None = None
    try:
        async for attempt in _attempts_async(settings):
            with attempt:
                attempts += 1
                resp = None
                resp = await client.get(url)
                resp.raise_for_status()
    except Exception as exc:
        return _verdict(cc, url, started, attempts, resp, exc, saver)
    return _verdict(cc, url, started, attempts, resp, None, saver)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another attempt; never for a 404."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRY_STATUSES
    return isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol
    )


def _verdict(
    cc: str,
    url: str,
    started: float,
    attempts: int,
    resp: httpx.Response | None,
    exc: Exception | None,
    saver: Saver,
) -> FlagResult:
    http_status = resp.status_code if resp is not None else None
    if exc is None and resp is not None:
        try:
            check_flag(
                resp.content,
                received=resp.num_bytes_downloaded,
                content_length=resp.headers.get("Content-Length"),
                content_type=resp.headers.get("Content-Type", ""),
            )
            saved = saver.save(resp.content, f"{cc}.gif")
        except Exception as bad:  # a bad body, or the disk said no
            exc = bad
        else:
            status = DownloadStatus.OK if saved else DownloadStatus.CANCELLED
            return FlagResult(
                cc, status, http_status, len(resp.content), attempts,
                started, time.perf_counter(), None, url,
            )  # fmt: skip
    if isinstance(exc, httpx.HTTPStatusError):
        http_status = exc.response.status_code
        if http_status == HTTPStatus.NOT_FOUND:
            return FlagResult(
                cc, DownloadStatus.NOT_FOUND, http_status, 0, attempts,
                started, time.perf_counter(), None, url,
            )  # fmt: skip
    error = describe_error(exc) if exc is not None else "no answer"
    return FlagResult(
        cc, DownloadStatus.ERROR, http_status, 0, attempts,
        started, time.perf_counter(), error, url,
    )  # fmt: skip


@functools.cache  # one policy per run, not one per flag
def _retrying_options(settings: Settings) -> dict[str, Any]:
    import tenacity  # only runs with --retries pay for the import

    backoff = tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, httpx.HTTPStatusError):
            delay = _retry_after(exc.response.headers.get("Retry-After"))
            if delay is not None:
                return min(delay, RETRY_AFTER_CAP)
        return float(backoff(state))

    return {
        "stop": tenacity.stop_after_attempt(settings.retries + 1),
        "wait": wait,
        "retry": tenacity.retry_if_exception(is_transient),
        "reraise": True,
    }


def _attempts(settings: Settings) -> Iterable[AbstractContextManager[Any]]:
    if settings.retries == 0:
        return (contextlib.nullcontext(),)
    import tenacity

    return tenacity.Retrying(**_retrying_options(settings))


async def _attempts_async(
    settings: Settings,
) -> AsyncIterator[AbstractContextManager[Any]]:
    if settings.retries == 0:
        yield contextlib.nullcontext()
        return
    import tenacity

    async for attempt in tenacity.AsyncRetrying(**_retrying_options(settings)):
        yield attempt


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
