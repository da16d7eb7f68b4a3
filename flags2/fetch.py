"""Downloading one flag: requests, retries, checks, save, and a verdict.

What one flag takes is written once, in :func:`_plan`: a generator that
yields each step it needs (a request, or work on the disk) and gets its
outcome back. The blocking and the async ``download_one`` only carry the steps
out, one with ``await``: the same few lines, so the three modes cannot differ
in what they do with an answer. Each leases its client from the run's pool,
so a mode module only says how the calls are spread (a loop, a thread pool,
tasks).

With ``--names`` (the book's flags3) a flag takes two requests, its
``metadata.json`` (read by :mod:`flags2.metadata`, as hostile) and then its GIF,
and is saved under the country's name; with ``--skip-existing`` a whole GIF
already in the folder is not requested.

Whatever goes wrong in one flag's work is that flag's result, never the run's
end: a failure the plan foresees gets its own words, and any other Exception
(a bug, here or in a library) becomes an ERROR naming its class. Only Ctrl-C,
SIGTERM (the CLI turns it into Ctrl-C), SystemExit and a cancelled task stop a
run, as they are not Exceptions.

Under asyncio a blocking write in a coroutine stalls every other request on
the loop while it lasts; flags3 hands it to a thread (``asyncio.to_thread``).
Measured here (README, "Saving in a thread"), the hand-off costs about what it
frees on a local disk: no slower for ``--names`` runs, where it is done as in
flags3, but up to a few percent slower for flags2's one request per flag,
where the save stays in the loop as in the book's flags2_asyncio.

Retries use tenacity (the same policy object drives ``Retrying`` and
``AsyncRetrying``); httpx-retries was considered and not used because it retries
inside the transport, before the body is read, so it can neither retry a
truncated body nor count the attempts a flag took. Between attempts a usable
``Retry-After`` (:mod:`flags2.retryafter`) is waited, at most RETRY_AFTER_CAP,
else the backoff. Every attempt first waits for the run's ``--rate``, if it
has one.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import AbstractContextManager
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx2 as httpx

from flags2.failures import cause_of
from flags2.http11 import CONNECTION
from flags2.metadata import BadMetadata, country_name
from flags2.pace import Pace
from flags2.retryafter import retry_after
from flags2.save import FlagProblem, Saver, check_flag, country_file_name
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult, describe_error, flag_url
from flags2.urls import metadata_url

if TYPE_CHECKING:
    import tenacity

    from flags2.aioclients import AsyncClientPool
    from flags2.clients import ClientPool
    from flags2.tracker import Tracker

__all__ = [
    "RETRY_STATUSES",
    "BadMetadata",
    "download_one",
    "download_one_async",
    "is_transient",
]

RETRY_STATUSES = frozenset({408, 418, 429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 10.0  # seconds; a server asking for longer is not waited on
_MAX_ERROR = 300  # characters of an unforeseen error's text that are shown
SAVE_IN_THREAD: bool | None = None
"""Under asyncio, True or False forces where disk work runs (for measuring);
None does it as measured: in a thread for ``--names`` runs only."""


def download_one(
    pool: ClientPool, cc: str, settings: Settings, tracker: Tracker
) -> FlagResult:
    """Download, check and save `cc`'s flag on a client leased from `pool`.

    The lease never waits: a pool has one per concurrent request. Nothing
    this flag meets ends the run: an exception nobody foresaw (a bug here or
    in a library) is its ERROR, named by class. Ctrl-C, SIGTERM (which the CLI
    turns into Ctrl-C) and SystemExit are not Exceptions, so they still stop
    the run.
    """
    flag = None
    try:
        flag = _Flag(cc, settings.base_url)
        with pool.lease() as client:
            return _download(client, flag, settings, tracker.saver, tracker.pace)
    except Exception as exc:
        return _crashed(cc, flag, exc)


async def download_one_async(
    pool: AsyncClientPool, cc: str, settings: Settings, tracker: Tracker
) -> FlagResult:
    """The coroutine twin of :func:`download_one`; the lease is the book's semaphore.

    asyncio.CancelledError is no Exception either: a cancelled run still stops.
    """
    flag = None
    try:
        flag = _Flag(cc, settings.base_url)
        async with pool.lease() as client:
            return await _download_async(
                client, flag, settings, tracker.saver, tracker.pace
            )
    except Exception as exc:
        return _crashed(cc, flag, exc)


def _crashed(cc: str, flag: _Flag | None, exc: Exception) -> FlagResult:
    """ERROR for what no step foresaw, named by the exception's class.

    One printable line, however odd the message: it may quote what the server
    sent.
    """
    try:
        error = describe_error(exc)
    except Exception:  # even its str() failed
        error = f"{type(exc)}"
    error = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in error)
    if len(error) > _MAX_ERROR:
        tail = f"... {type(exc)}"
        error = error[: _MAX_ERROR - len(tail)] + tail
    if flag is None:
        return FlagResult(cc, DownloadStatus.ERROR, error=error)
    return flag.result(DownloadStatus.ERROR, error=error)


def _download(
    client: httpx.Client,
    flag: _Flag,
    settings: Settings,
    saver: Saver,
    pace: Pace | None = None,
) -> FlagResult:
    plan = _plan(flag, settings, saver)
    outcome: Any = None
    failure: Exception | None = None
    while True:
        try:
            step = plan.send(outcome) if failure is None else plan.throw(failure)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        if isinstance(step, _Get):
            outcome = _get(client, step.url, settings, pace, flag)
            continue
        try:
            outcome = step.work()
        except Exception as exc:
            failure = exc


async def _download_async(
    client: httpx.AsyncClient,
    flag: _Flag,
    settings: Settings,
    saver: Saver,
    pace: Pace | None = None,
) -> FlagResult:
    plan = _plan(flag, settings, saver)
    outcome: Any = None
    failure: Exception | None = None
    while True:
        try:
            step = plan.send(outcome) if failure is None else plan.throw(failure)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        if isinstance(step, _Get):
            outcome = await _get_async(client, step.url, settings, pace, flag)
            continue
        try:
            if _in_thread(settings):
                import asyncio  # here: the blocking modes never import asyncio

                outcome = await asyncio.to_thread(step.work)
            else:
                outcome = step.work()  # blocks the loop, briefly: a local write
        except Exception as exc:
            failure = exc


def _in_thread(settings: Settings) -> bool:
    return settings.names if SAVE_IN_THREAD is None else SAVE_IN_THREAD


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another attempt; never for a 404."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRY_STATUSES
    if not isinstance(exc, httpx.TransportError) or isinstance(
        exc, httpx.UnsupportedProtocol
    ):
        return False
    cause = cause_of(exc)  # an untrusted certificate will not change on retry
    return cause is None or cause.transient


class _Get(NamedTuple):
    """A step of a plan: GET `url` (with the run's retries and rate)."""

    url: str


class _Disk(NamedTuple):
    """A step of a plan: file work, whose result (or exception) comes back."""

    work: Callable[[], Any]


class _Answer(NamedTuple):
    """How a GET ended: the last response, and what went wrong, if anything."""

    resp: httpx.Response | None
    exc: Exception | None

    @property
    def not_found(self) -> bool:
        exc = self.exc
        return (
            isinstance(exc, httpx.HTTPStatusError)
            and exc.response.status_code == HTTPStatus.NOT_FOUND
        )

    @property
    def status(self) -> int | None:
        if isinstance(self.exc, httpx.HTTPStatusError):
            return self.exc.response.status_code
        return self.resp.status_code if self.resp is not None else None


class _Flag:
    """What one flag's requests add up to, and its results."""

    def __init__(self, cc: str, base_url: str) -> None:
        self.cc = cc
        self.url = flag_url(base_url, cc)
        self.started = time.perf_counter()
        self.attempts = 0
        self.http_version: str | None = None
        self.final_url: str | None = None
        self.connections: tuple[object, ...] = ()

    def saw(self, resp: httpx.Response) -> None:
        """Note an answer's protocol, connection and (if redirected) its URL."""
        version = resp.extensions.get("http_version")
        if isinstance(version, bytes):
            self.http_version = version.decode("ascii", "replace")
        # httpx's transport names its stream; the lean ones their TLS connection.
        stream = resp.extensions.get("network_stream") or resp.extensions.get(
            CONNECTION
        )
        if stream is not None and stream not in self.connections:
            self.connections += (stream,)
        self.final_url = str(resp.url) if resp.history else None

    def attempt(self) -> None:
        if not self.attempts:  # a flag starts with its first request
            self.started = time.perf_counter()
        self.attempts += 1

    def result(
        self,
        status: DownloadStatus,
        http_status: int | None = None,
        size: int = 0,
        error: str | None = None,
        file: str | None = None,
        exc: Exception | None = None,
    ) -> FlagResult:
        return FlagResult(
            self.cc, status, http_status, size, self.attempts,
            self.started, time.perf_counter(), error, self.url, file,
            self.http_version, self.final_url,
            cause_of(exc) if exc is not None else None, self.connections,
        )  # fmt: skip

    def failed(self, answer: _Answer, what: str = "") -> FlagResult:
        """NOT_FOUND for a 404, else ERROR; `what` says which request failed."""
        if answer.not_found:
            return self.result(DownloadStatus.NOT_FOUND, answer.status)
        exc = answer.exc
        error = describe_error(exc) if exc is not None else "no answer"
        return self.result(DownloadStatus.ERROR, answer.status, error=what + error,
                           exc=exc)  # fmt: skip


Plan = Generator[_Get | _Disk, Any, FlagResult]


def _plan(flag: _Flag, settings: Settings, saver: Saver) -> Plan:
    """Every step of one flag, in order; returns its result."""
    cc, filename = flag.cc, f"{flag.cc}.gif"
    if settings.names:  # the name first: --skip-existing needs it
        meta: _Answer = yield _Get(metadata_url(settings.base_url, cc))
        if meta.not_found:  # no country, or only its metadata is missing?
            gif: _Answer = yield _Get(flag.url)
            if gif.not_found or gif.exc is not None:
                return flag.failed(gif)
            return flag.result(
                DownloadStatus.ERROR, meta.status, error="no metadata.json"
            )
        if meta.exc is not None or meta.resp is None:
            return flag.failed(meta, "metadata.json: ")
        about = meta.resp
        try:
            filename = country_file_name(
                country_name(
                    about.content,
                    received=about.num_bytes_downloaded,
                    content_length=about.headers.get("Content-Length"),
                )
            )
        except FlagProblem as bad:
            return flag.result(DownloadStatus.ERROR, meta.status, error=str(bad))
    if settings.skip_existing:
        try:
            size = yield _Disk(functools.partial(saver.existing, filename))
        except Exception as exc:  # a folder in the way, a file we cannot read
            return flag.result(DownloadStatus.ERROR, error=describe_error(exc))
        if size is not None:
            return flag.result(DownloadStatus.SKIPPED, None, size, file=filename)
    gif = yield _Get(flag.url)
    resp = gif.resp
    if gif.exc is not None or resp is None:
        return flag.failed(gif)
    try:
        check_flag(
            resp.content,
            received=resp.num_bytes_downloaded,
            content_length=resp.headers.get("Content-Length"),
            content_type=resp.headers.get("Content-Type", ""),
        )
        saved = yield _Disk(functools.partial(saver.save, resp.content, filename, cc))
    except Exception as bad:  # a bad body, or the disk said no
        return flag.result(
            DownloadStatus.ERROR, resp.status_code, error=describe_error(bad)
        )
    if not saved:  # cancelled (Ctrl-C, a full disk) before it could be written
        return flag.result(DownloadStatus.CANCELLED, resp.status_code)
    return flag.result(
        DownloadStatus.OK, resp.status_code, len(resp.content), file=filename
    )


def _get(
    client: httpx.Client,
    url: str,
    settings: Settings,
    pace: Pace | None,
    flag: _Flag,
) -> _Answer:
    resp: httpx.Response | None = None
    try:
        for attempt in _attempts(settings):
            with attempt:
                if pace is not None:
                    pace.wait()
                flag.attempt()
                resp = None  # a transport error must not report the last status
                resp = client.get(url)
                flag.saw(resp)
                resp.raise_for_status()
    except Exception as exc:
        return _Answer(resp, exc)
    return _Answer(resp, None)


async def _get_async(
    client: httpx.AsyncClient,
    url: str,
    settings: Settings,
    pace: Pace | None,
    flag: _Flag,
) -> _Answer:
    resp: httpx.Response | None = None
    try:
        async for attempt in _attempts_async(settings):
            with attempt:
                if pace is not None:
                    await pace.wait_async()
                flag.attempt()
                resp = None
                resp = await client.get(url)
                flag.saw(resp)
                resp.raise_for_status()
    except Exception as exc:
        return _Answer(resp, exc)
    return _Answer(resp, None)


@functools.cache  # one policy per run, not one per flag
def _retrying_options(settings: Settings) -> dict[str, Any]:
    import tenacity  # only runs with --retries pay for the import

    return {
        "stop": tenacity.stop_after_attempt(settings.retries + 1),
        "wait": _wait,
        "retry": tenacity.retry_if_exception(is_transient),
        "reraise": True,
    }


def _wait(state: tenacity.RetryCallState) -> float:
    """A usable Retry-After (at most RETRY_AFTER_CAP), else the backoff."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, httpx.HTTPStatusError):
        value = exc.response.headers.get("Retry-After")
        delay = retry_after(value, cap=RETRY_AFTER_CAP)
        if delay is not None:
            return delay
    return _backoff(state)


def _backoff(state: tenacity.RetryCallState) -> float:
    """Exponential, with jitter so that many flags do not retry in step."""
    return float(_exponential()(state))


@functools.cache
def _exponential() -> Any:
    import tenacity

    return tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)


def _attempts(settings: Settings) -> Iterable[AbstractContextManager[Any]]:
    if settings.retries == 0:
        return (contextlib.nullcontext(),)
    import tenacity

    return tenacity.Retrying(**_retrying_options(settings))


def _attempts_async(settings: Settings) -> AsyncIterator[AbstractContextManager[Any]]:
    if settings.retries == 0:
        return _Once()
    import tenacity

    return tenacity.AsyncRetrying(**_retrying_options(settings))


class _Once:
    """One attempt, as an async iterator that is a plain object.

    Not an async generator: one left unfinished (a 404 raises out of its
    loop) is closed by the event loop's finalizer hook, which schedules that
    through ``call_soon_threadsafe``: a write to the loop's self-pipe, a
    wake-up and a task, for every failed request.
    """

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> AbstractContextManager[Any]:
        if self._done:
            raise StopAsyncIteration
        self._done = True
        return contextlib.nullcontext()
