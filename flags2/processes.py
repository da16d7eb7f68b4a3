"""The process-pool mode's executor: workers that keep every promise of a run.

:func:`process_pool` is a ``ProcessPoolExecutor`` whose workers each run the
same :func:`flags2.fetch.download_one` as the other modes, on clients of their
own built by :func:`_init_worker` from the run's settings (a frozen, picklable
:class:`~flags2.settings.Settings`). The parent keeps the tracker, the progress
bar, the report and ``--json``; each worker sends back its flags' results.

What a pool of processes needs that threads do not:

* **Ctrl-C.** A terminal's Ctrl-C reaches every process of its group. Workers
  ignore SIGINT: only the parent decides. On Ctrl-C (or SIGTERM, which the CLI
  turns into one) it first stops every save: saves in all workers go through
  one cross-process lock with a stop flag, so once the parent holds it and sets
  the flag, no save is half done and none can start. Then it cancels queued
  work and ends its workers at once (a worker in a 10 s read is not waited
  for), and no temporary file can be left.
* **Nothing saved is lost.** Each worker reports a save (and a fatal write
  error, such as a full disk) on a pipe to the parent *inside* that lock, so
  when the parent stops, every file on disk is in its saver's books even if
  its result never made it back: the report counts it as saved.
* **No orphans.** Each worker has a thread watching its parent (the pipe
  ``multiprocessing.parent_process()`` gives reaches EOF when the parent dies,
  on every platform); if the parent is killed (``kill -9``), the worker waits
  for a save in progress and exits.
* **Start methods.** Everything a worker gets travels as initializer
  arguments, so ``fork``, ``spawn`` (the default on macOS and Windows) and
  ``forkserver`` (Linux's from Python 3.14 on, and flags2's there whenever
  the run has threads: see :func:`start_context`) behave alike. The
  environment variable ``FLAGS2_START_METHOD`` picks one (the tests run each).
* **Rate.** A ``--rate`` is one schedule for the whole run, as in the other
  modes: the next start time lives in shared memory, under its own lock.

The parent also learns when each worker was ready (the pool's start-up) and
each worker's peak memory, for ``--json`` and the bench: what processes cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from flags2 import portable
from flags2.clientplan import server_alpn
from flags2.clients import ClientPool
from flags2.fetch import download_one
from flags2.pace import Pace, RateLimit
from flags2.save import Saver
from flags2.settings import Settings
from flags2.status import DownloadStatus, FlagResult
from flags2.tracker import Tracker

__all__ = [
    "START_METHOD_ENV",
    "download_flag",
    "process_pool",
    "start_context",
    "worker_settings",
]

START_METHOD_ENV = "FLAGS2_START_METHOD"
_END_GRACE = 0.5  # seconds a terminated worker gets to die before SIGKILL
_PARENT_POLL = 1.0  # seconds between checks of os.getppid(), the watch's backup


def start_context() -> BaseContext:
    """The multiprocessing context: the environment's, else a safe one.

    ``fork`` is the fastest start by far (a worker is a copy of this process,
    imports and all), but forking a process with more than one thread can
    leave the child stuck on a lock that another thread held at the fork (an
    import's, a stream's): Python 3.12 warns of it, and 3.14 stopped defaulting
    to it on Linux. A run has threads when it started the bundled server (its
    pipe readers) or an https probe is still waiting. So where the platform's
    default is ``fork``, it is used only while this process has one thread,
    and ``forkserver`` otherwise: its server starts clean and imports this
    module before it forks any worker, so each worker still starts with
    flags2 and httpx2 loaded instead of importing them all again (about a
    second for ``-m 20`` on 2 cores). ``FLAGS2_START_METHOD`` picks any method.
    """
    method = os.environ.get(START_METHOD_ENV) or None
    # Not multiprocessing's own default, which anything in the process may have
    # fixed by merely asking for it: the platform's, the list's first element.
    methods = multiprocessing.get_all_start_methods()
    if method is None and methods[0] == "fork" and _threaded():
        method = "forkserver" if "forkserver" in methods else "spawn"
    context = multiprocessing.get_context(method or methods[0])
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload([__name__])
    return context


def _threaded() -> bool:
    """This process has a thread besides this one, ``_thread``'s included.

    A thread that has just ended (the lookup's, the probe's) is still listed
    by the system for a moment after ``threading`` let it go: one that only
    the system lists is given `_SETTLE` seconds to leave. A bundled server's
    idle handler thread stays, and the answer is then yes.
    """
    deadline = time.monotonic() + _SETTLE
    while portable.thread_count() > 1:
        if threading.active_count() > 1 or time.monotonic() > deadline:
            return True
        time.sleep(_SETTLE / 10)
    return False


_SETTLE = 0.05


@dataclasses.dataclass(frozen=True)
class _Shared:
    """What the parent and every worker share: the save lock and the pipe."""

    stop: Any  # a multiprocessing Value: its lock guards every save
    send: connection.Connection  # messages to the parent, one write each
    next_start: Any  # a multiprocessing Value: --rate's next time.monotonic()
    halt: Any  # a lock-free Value: set first on a stop, so no new request starts


class _SharedPace(Pace):
    """The run's ``--rate`` over all workers: evenly spaced starts, as Pace's.

    ``time.monotonic`` is one clock for every process of the machine.
    """

    def __init__(self, rate: RateLimit, next_start: Any) -> None:
        # No limiter of its own (Pace's is per process): the slot is shared.
        self.rate = rate
        self._next = next_start
        self._gap = rate.period / rate.requests

    def wait(self) -> None:
        with self._next.get_lock():
            now = time.monotonic()
            start = max(now, self._next.value)
            self._next.value = start + self._gap
        if start > now:
            time.sleep(start - now)


# -- in each worker --------------------------------------------------------------


class _WorkerSaver(Saver):
    """A Saver whose saves hold the run's lock, stop with the run, and are told."""

    def __init__(self, dest: Path, shared: _Shared, local: threading.Lock) -> None:
        super().__init__(dest, sweep=False)  # the parent's Saver swept
        self._shared, self._local = shared, local

    def save(self, body: bytes, filename: str, cc: str | None = None) -> bool:
        shared = self._shared
        # The local lock lets the parent watch exit between saves, never in one.
        with self._local, shared.stop.get_lock():
            if shared.stop.value:
                return False
            try:
                saved = super().save(body, filename, cc)
            except OSError as exc:
                if self.failed is exc:  # fatal: the parent stops the run
                    shared.send.send(("failed", exc.errno, exc.strerror, filename))
                raise
            if saved:
                shared.send.send(("saved", cc, filename, len(body)))
            return saved


class _Worker:
    """A worker's own clients and saver, made once by the pool's initializer."""

    def __init__(
        self,
        settings: Settings,
        shared: _Shared,
        alpn: str | None,
        local: threading.Lock,
    ) -> None:
        self.local = local  # held by a save, which the parent's watch awaits
        self.shared = shared
        self.settings = settings
        saver = _WorkerSaver(settings.dest, shared, self.local)
        self.tracker = Tracker([], settings, saver)
        if settings.rate is not None:
            self.tracker.pace = _SharedPace(settings.rate, shared.next_start)
        self.pool = ClientPool(settings, alpn)
        self.peak = 0


_worker: _Worker | None = None


def _init_worker(settings: Settings, shared: _Shared, alpn: str | None) -> None:
    global _worker
    # The parent alone reacts to Ctrl-C (it was blocked since this process
    # began: see _launch); SIGTERM (a fork inherits the CLI's handler) ends a
    # worker at once: the parent sends it only when no save can be in progress.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The watch starts first: a worker that can never be set up (under fork,
    # a lock another thread of the parent held at the fork stays held) still
    # ends with its parent instead of living on, holding the parent's pipes.
    local = threading.Lock()
    threading.Thread(target=_watch_parent, args=(local,), daemon=True).start()
    _worker = _Worker(settings, shared, alpn, local)
    shared.send.send(("ready", os.getpid(), time.perf_counter()))
    # Counted even if this worker never gets a flag: it costs its memory all the same.
    _worker.peak = portable.peak_rss_kib()
    shared.send.send(("peak", os.getpid(), _worker.peak))


def _watch_parent(local: threading.Lock) -> None:
    """Exit once the parent is gone, between two saves."""
    parent, ppid = multiprocessing.parent_process(), os.getppid()
    if parent is None:
        return
    while not connection.wait([parent.sentinel], timeout=_PARENT_POLL):
        if os.getppid() != ppid:  # reparented: the parent died
            break
    local.acquire(timeout=2.0)  # a save in progress completes first
    os._exit(1)


def _started() -> None:
    """The warm-up task: one per worker, so that every worker starts at once."""


def download_flag(cc: str) -> FlagResult:
    """`download_one` for `cc` in this worker, on its own clients."""
    worker = _worker
    if worker is None:
        raise RuntimeError("download_flag runs in a process_pool worker only")
    if worker.shared.halt.value:  # queued here before the stop: never requested
        return FlagResult(cc, DownloadStatus.CANCELLED)
    result = download_one(worker.pool, cc, worker.settings, worker.tracker)
    if result.connections:  # live streams cannot cross to the parent
        result = dataclasses.replace(
            result, connections=tuple(_connection_key(c) for c in result.connections)
        )
    peak = portable.peak_rss_kib()
    if peak > worker.peak:  # only when it grew: a few messages per worker
        worker.peak = peak
        worker.shared.send.send(("peak", os.getpid(), peak))
    return result


_keys: dict[int, tuple[object, str]] = {}  # id -> (the stream kept alive, its key)


def _connection_key(stream: object) -> str:
    """A name for `stream` unique across the run's processes, for the parent's count."""
    if id(stream) not in _keys:
        _keys[id(stream)] = (stream, f"{os.getpid()}:{len(_keys)}")
    return _keys[id(stream)][1]


# -- in the parent ---------------------------------------------------------------


class _Inbox:
    """The parent's end of the workers' pipe, read by a thread into the tracker."""

    def __init__(self, receive: connection.Connection, tracker: Tracker) -> None:
        self._receive = receive
        self._tracker = tracker
        self.ready: dict[int, float] = {}
        self.peaks: dict[int, int] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        saver = self._tracker.saver
        while True:
            try:
                message = self._receive.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            kind, *data = message
            if kind == "saved":  # as the thread modes' Saver keeps its books
                cc, filename, size = data
                if cc is not None:
                    saver.files[cc] = filename
                saver.saved[filename] = size
            elif kind == "failed":
                errno, strerror, filename = data
                saver.failed, saver.failed_file = OSError(errno, strerror), filename
            elif kind == "ready":
                self.ready[data[0]] = data[1]
            elif kind == "peak":
                self.peaks[data[0]] = data[1]

    def close(self, send: connection.Connection) -> None:
        """Read everything sent so far, then stop (the workers are gone)."""
        with contextlib.suppress(OSError):
            send.send(None)
        self._thread.join(timeout=1.0)


def _launch(executor: futures.ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now, with Ctrl-C held back from them and deferred here.

    A worker gets a terminal's Ctrl-C as well, and until its initializer has
    run (a spawned interpreter takes a while) it would die of it with a
    traceback. A blocked signal stays blocked in a child, over fork and exec,
    and the initializer then ignores it; in the parent it is delivered as
    soon as the launch is over. (Where signals cannot be blocked, Windows, a
    Ctrl-C during a worker's start can only stop it.)
    """
    with portable.sigint_held():
        for _ in range(workers):  # a task per worker: each starts one (spawn)
            executor.submit(_started)


def _stop_saving(shared: _Shared) -> None:
    with shared.stop.get_lock():  # waits for any save in progress, anywhere
        shared.stop.value = 1


def _end(workers: set[BaseProcess]) -> None:
    """End `workers` now: SIGTERM (TerminateProcess on Windows), then SIGKILL."""
    for process in workers:
        process.terminate()
    deadline = time.monotonic() + _END_GRACE
    for process in workers:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=_END_GRACE)


def worker_settings(settings: Settings) -> tuple[Settings, str | None]:
    """A worker's settings, and the server's ALPN answer for its clients.

    A worker makes one request at a time (its pace is the run's, shared). An
    https server is asked once, here, whether it speaks HTTP/2, and every
    worker goes by that answer: asked by each worker instead, up to 50
    handshakes, and a flaky server could have the workers disagree.
    """
    # Under --http1.1 the answer is known, and a probe's TLS session would be
    # the parent's alone: no handshake for it here, nor in the workers.
    alpn = server_alpn(settings) if settings.http2 else "http/1.1"
    worker = dataclasses.replace(
        settings, concurrency=1, http2=settings.http2 and alpn == "h2"
    )
    return worker, alpn


@contextlib.contextmanager
def process_pool(
    settings: Settings, tracker: Tracker
) -> Iterator[futures.ProcessPoolExecutor]:
    """A ProcessPoolExecutor of ``settings.concurrency`` workers for one run.

    Its workers run :func:`download_flag`. On any exception (Ctrl-C, a stop)
    it stops every save, drops queued work and ends the workers without
    waiting for their downloads; what they saved is in ``tracker.saver``.
    """
    worker, alpn = worker_settings(settings)
    context = start_context()  # after the probe: its thread may still be about
    receive, send = context.Pipe(duplex=False)
    shared = _Shared(
        context.Value("b", 0),
        send,
        context.Value("d", 0.0),
        context.Value("b", 0, lock=False),
    )
    before = set(multiprocessing.active_children())
    started = time.perf_counter()
    executor = futures.ProcessPoolExecutor(
        max_workers=settings.concurrency,
        mp_context=context,
        initializer=_init_worker,
        initargs=(worker, shared, alpn),
    )
    inbox: _Inbox | None = None
    try:
        _launch(executor, settings.concurrency)
        # Read only once every worker is forked: a fork from a process with
        # more threads risks a lock held in the child (3.12 warns of it). What
        # the workers send meanwhile waits in the pipe; its times are theirs.
        inbox = _Inbox(receive, tracker)
        yield executor
    except BaseException as exc:
        shared.halt.value = 1  # at once: the wait for a save may take a while
        executor.shutdown(wait=False, cancel_futures=True)
        _stop_saving(shared)
        _end(set(multiprocessing.active_children()) - before)
        if not isinstance(exc, BrokenProcessPool):
            raise
        # A worker was killed (out of memory, a kill -9): the run stops as on
        # a full disk, with what was saved kept and the rest cancelled.
        tracker.stopped = f"a worker process died ({exc}); the run stops here"
    else:
        executor.shutdown(wait=True)
    finally:
        inbox = inbox if inbox is not None else _Inbox(receive, tracker)
        inbox.close(send)
        tracker.pool_stats = _stats(inbox, started, context, settings.concurrency)


def _stats(
    inbox: _Inbox, started: float, context: BaseContext, workers: int
) -> dict[str, Any]:
    ready = inbox.ready.values()
    return {
        "start_method": context.get_start_method(),
        "workers": workers,
        "startup": round(max(ready) - started, 6) if ready else None,
        "parent_peak_rss_mib": round(portable.peak_rss_kib() / 1024, 1),
        "workers_peak_rss_mib": round(sum(inbox.peaks.values()) / 1024, 1),
    }
