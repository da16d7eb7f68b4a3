"""The bookkeeping of one run: results, progress, and Ctrl-C.

Every mode hands each finished flag to :meth:`Tracker.record`, which counts it
and shows it (one verbose line, or a step of the progress bar with live
counts). :meth:`Tracker.running` wraps a mode's work: on Ctrl-C it stops
saving, and every code without a result is counted as cancelled.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import Any

from flags2.save import Saver
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult

__all__ = ["Tracker", "thread_pool"]


class Tracker:
    """Collects the results of one run over `cc_list`."""

    def __init__(self, cc_list: Sequence[str], settings: Settings) -> None:
        self.cc_list = list(cc_list)
        self.settings = settings
        self.saver = Saver(settings.dest)
        self.results: dict[str, FlagResult] = {}
        self.counter: Counter[DownloadStatus] = Counter()
        self.interrupted = False
        self.t0 = time.perf_counter()
        self.elapsed = 0.0
        self._bar: Any = None

    def record(self, result: FlagResult) -> None:
        self.results[result.cc] = result
        self.counter[result.status] += 1
        if self.settings.verbose:
            print(result.cc, result.message)
        elif self._bar is not None:
            count = self.counter
            self._bar.set_postfix_str(
                f"OK={count[DownloadStatus.OK]} 404={count[DownloadStatus.NOT_FOUND]}"
                f" errors={count[DownloadStatus.ERROR]}",
                refresh=False,
            )
            self._bar.update()

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
        finally:
            self.elapsed = time.perf_counter() - self.t0
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            now = time.perf_counter()
            for cc in self.cc_list:
                if cc not in self.results:
                    self.results[cc] = FlagResult(
                        cc, DownloadStatus.CANCELLED, started=now, finished=now
                    )
                    self.counter[DownloadStatus.CANCELLED] += 1

    def ordered_results(self) -> list[FlagResult]:
        return [self.results[cc] for cc in self.cc_list if cc in self.results]


@contextmanager
def thread_pool(max_workers: int) -> Iterator[futures.ThreadPoolExecutor]:
    """A ThreadPoolExecutor that, on Ctrl-C, drops queued work and does not wait.

    ``with ThreadPoolExecutor()`` would wait for every download in flight,
    up to the timeout, before Ctrl-C could take effect.
    """
    executor = futures.ThreadPoolExecutor(max_workers=max_workers)
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _progress_bar(total: int, verbose: bool) -> Any:
    if verbose or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # imported only when a bar will be drawn

    return tqdm(total=total, unit="flag", file=sys.stderr)
