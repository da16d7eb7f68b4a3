"""The bookkeeping of one run: results, progress, and Ctrl-C.

Every mode hands each finished flag to :meth:`Tracker.record`, which counts it
and shows it (one verbose line, or a step of the progress bar with live
counts). :meth:`Tracker.running` wraps a mode's work: on Ctrl-C it stops
saving, and every code without a result is counted as cancelled (or as saved,
when the saver wrote it but its result never reached the loop).

Two failures stop a run the way Ctrl-C does, said in :attr:`Tracker.stopped`:
a write error every flag would repeat (a full disk), and a server that never
answers (no answer yet, and the last `give_up_after` requests in a row could
not connect or timed out), rather than waiting out every flag's timeout.
A third: a cause every flag would meet (:mod:`flags2.failures`: an untrusted
certificate, a host that does not resolve, a refused connection), met by
`SAME_CAUSE_STOP` flags in a row before any answer.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flags2.failures import Cause
from flags2.pace import Pace
from flags2.save import Saver
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult, describe_error, no_answer
from flags2.urls import redact, run_proxy

__all__ = ["MIN_GIVE_UP", "SAME_CAUSE_STOP", "Tracker"]

# Requests in a row without an answer before a run gives up on its server;
# never fewer than the concurrency, so one whole wave of requests has failed.
MIN_GIVE_UP = 10
# Flags in a row failing with the same run-wide cause before a run stops: more
# than one, so one flag's odd failure (a redirect elsewhere) cannot end it.
SAME_CAUSE_STOP = 3


class _Stop(Exception):
    """Raised by record() to end a mode's loop; running() handles it."""


class Tracker:
    """Collects the results of one run over `cc_list`."""

    def __init__(
        self, cc_list: Sequence[str], settings: Settings, saver: Saver | None = None
    ) -> None:
        self.cc_list = list(cc_list)
        self.settings = settings
        self.saver = Saver(settings.dest) if saver is None else saver
        self.pace = Pace(settings.rate) if settings.rate is not None else None
        """The run's one --rate limiter, shared by all its requests; or None."""
        self.results: dict[str, FlagResult] = {}
        self.counter: Counter[DownloadStatus] = Counter()
        self.interrupted = False
        self.t0 = time.perf_counter()
        self.elapsed = 0.0
        self._bar: Any = None
        self.proxy = run_proxy(settings.base_url)
        """The environment's proxy for this run, redacted; None without one."""
        self.stopped: str | None = None
        """Why the run stopped early (a full disk, no server), if it did."""
        self.unreachable = False
        self.give_up_after = max(MIN_GIVE_UP, settings.concurrency)
        self.answered = False
        """True once any request got an answer (any HTTP status)."""
        self.no_answers = 0
        """Flags that failed without an answer: refused, unreachable, silent."""
        self._silent = 0  # requests in a row without an answer
        self.consumed: dict[str, float] = {}
        """When each result reached record(): with --map, later than it finished."""
        self.pool_stats: dict[str, Any] = {}
        """What a process pool cost (start-up, memory), for --json; else empty."""
        self._cause: Cause | None = None  # the last flag's run-wide cause
        self._same = 0  # flags in a row with that cause
        self.connections: set[int | str] = set()
        """The connections answers came on (ids of live objects), when known."""
        self._streams: list[object] = []  # keeps those ids unique
        self.http_versions: Counter[str] = Counter()
        """Flags by the protocol of their last answer."""

    def record(self, result: FlagResult) -> None:
        silent = no_answer(result)  # before the proxy's note changes the text
        self.no_answers += silent
        if self.proxy is not None and result.status is DownloadStatus.ERROR:
            result = dataclasses.replace(
                result, error=f"{result.error} (through proxy {self.proxy})"
            )
        self.results[result.cc] = result
        self.consumed[result.cc] = time.perf_counter()
        self.counter[result.status] += 1
        for stream in result.connections:
            # A worker process names its streams (str); here they are objects.
            key = stream if isinstance(stream, str) else id(stream)
            if key not in self.connections:
                self.connections.add(key)
                self._streams.append(stream)
        if result.http_version is not None:
            self.http_versions[result.http_version] += 1
        if self.settings.verbose:
            print(result.cc, result.message)
        elif self._bar is not None:
            self._bar.set_postfix_str(_counts(self.counter), refresh=False)
            self._bar.update()
        self._check_stop(result, silent)

    def _check_stop(self, result: FlagResult, silent: bool) -> None:
        failed = self.saver.failed
        if failed is not None and self.stopped is None:
            self.stopped = (
                f"cannot save flags in {str(self.settings.dest)!r}:"
                f" {failed.strerror}; the run stops here"
            )
            raise _Stop
        if result.http_status is not None:
            self.answered = True
        if self.answered or result.status is DownloadStatus.CANCELLED:
            return
        cause = result.cause
        self._same = self._same + 1 if cause is not None and cause == self._cause else 1
        self._cause = cause
        if cause is not None and self._same >= SAME_CAUSE_STOP:
            self.stop_for(cause)
        self._silent = self._silent + 1 if silent else 0
        if self._silent >= self.give_up_after:
            self.unreachable = True
            where = redact(self.settings.base_url)
            through = f" through proxy {self.proxy}" if self.proxy else ""
            self.stopped = (
                f"nothing answers at {where}{through}: {self._silent} requests in"
                " a row could not connect or timed out, so the run stops here"
            )
            raise _Stop

    def stop_for(self, cause: Cause) -> None:
        """Stop the run for `cause`, which every flag would meet; said once."""
        text = cause.text
        if self.proxy is not None and cause.kind == "refused":
            text = f"the proxy {self.proxy} does not answer: {text}"
        self.unreachable = cause.kind == "refused"  # the runner adds its advice
        self.stopped = f"{text}; the run stops here"
        raise _Stop

    def stop_before(self, cause: Cause) -> None:
        """Stop the run before any request: every code is cancelled."""
        with self.running():
            self.stop_for(cause)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Time the work inside; turn Ctrl-C into cancelled flags."""
        self._bar = _progress_bar(len(self.cc_list), self.settings.verbose)
        self.t0 = time.perf_counter()
        try:
            yield
        except KeyboardInterrupt:
            self.interrupted = True
            self.saver.cancel()
        except _Stop:  # self.stopped says why
            self.saver.cancel()
        finally:
            self.elapsed = time.perf_counter() - self.t0
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._settle()

    def _settle(self) -> None:
        """Give every code without a result one: saved, or cancelled.

        A stop can leave flags that were saved but never recorded (their
        results still queued in the pool): the saver knows them.
        """
        now, saver = time.perf_counter(), self.saver
        for cc in self.cc_list:
            if cc in self.results:
                continue
            file = saver.files.get(cc, f"{cc}.gif")
            size = saver.saved.get(file)
            if size is not None:
                result = FlagResult(cc, DownloadStatus.OK, 200, size, 1, file=file)
            elif saver.failed is not None and saver.failed_file == file:
                error = describe_error(saver.failed)
                result = FlagResult(cc, DownloadStatus.ERROR, 200, error=error)
            else:
                result = FlagResult(cc, DownloadStatus.CANCELLED)
            result = dataclasses.replace(result, started=now, finished=now)
            self.results[cc] = result
            self.counter[result.status] += 1

    def ordered_results(self) -> list[FlagResult]:
        return [self.results[cc] for cc in self.cc_list if cc in self.results]


def _progress_bar(total: int, verbose: bool) -> Any:
    stderr = sys.stderr
    if verbose or stderr is None or not stderr.isatty():
        return None
    if os.environ.get("TERM") == "dumb":  # cannot redraw a line: no animation
        return None
    from tqdm import tqdm  # imported only when a bar will be drawn

    class Bar(tqdm):  # type: ignore[misc]  # tqdm has no type hints
        """A tqdm bar sized by _screen_shape, read again at every redraw.

        tqdm documents overriding ``format_dict`` (the values each redraw
        formats); its own ``dynamic_ncols=True`` would re-read the width too,
        but as the whole terminal's, with no room for the echoed ^C.
        """

        @property
        def format_dict(self) -> dict[str, Any]:
            values: dict[str, Any] = super().format_dict
            values["ncols"], values["nrows"] = _screen_shape(stderr)
            return values

    # The counts come first: at any width tqdm shrinks the bar, then trims
    # the line's end, so a narrow terminal loses the timings, never the counts.
    cols, rows = _screen_shape(stderr)
    return Bar(
        total=total,
        unit="flag",
        file=stderr,
        ncols=cols,
        nrows=rows,
        bar_format="{n_fmt}/{total_fmt}{postfix} |{bar}| {elapsed}<{remaining}",
        postfix=_counts(Counter()),
    )


def _screen_shape(file: Any) -> tuple[int | None, int | None]:
    """The bar's width and height: three columns short of the terminal's.

    tqdm leaves one column free; two more are for the ^C a terminal echoes
    on Ctrl-C, which then stays on the bar's line instead of wrapping and
    leaving a copy of the bar above the final one.
    """
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):
        return None, None
    return max(size.columns - 3, 10), size.lines - 1


def _counts(count: Counter[DownloadStatus]) -> str:
    skipped = count[DownloadStatus.SKIPPED]
    return (
        f"OK={count[DownloadStatus.OK]} 404={count[DownloadStatus.NOT_FOUND]}"
        f" errors={count[DownloadStatus.ERROR]}"
        + (f" skipped={skipped}" if skipped else "")
    )
