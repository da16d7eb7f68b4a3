"""One download run, start to finish, for any mode.

Picks the mode's module, starts the bundled server when the run targets
LOCAL, DELAY or ERROR and nothing answers there, prints the book's reports,
writes ``--json``, and turns the outcome into an exit status.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast
from urllib.parse import urlsplit

from flags2 import portable
from flags2.failures import unresolvable
from flags2.report import final_report, initial_report, run_record
from flags2.settings import MODES, Settings
from flags2.status import DownloadStatus
from flags2.tracker import Tracker
from flags2.urls import redact

__all__ = [
    "BUNDLED",
    "DESCRIPTOR_RESERVE",
    "EXIT_ERRORS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "MODES",
    "Mode",
    "descriptor_note",
    "effective_concurrency",
    "load_mode",
    "run",
]

EXIT_OK, EXIT_ERRORS, EXIT_INTERRUPTED = 0, 1, 130

DESCRIPTOR_RESERVE = 64
"""Descriptors kept back from connections: stdio, the event loop's, the name
lookups', the bundled server's pipes, the lease and the ``--json`` files."""
# A request in flight holds its socket and, while its flag is saved, the
# temporary (a thread-pool run can save every flag at once).
_PER_REQUEST = 2

# Labels served by the bundled servers, and the server kind each one is.
BUNDLED = {"LOCAL": "local", "DELAY": "delay", "ERROR": "error"}


class Mode(Protocol):
    DEFAULT_CONCUR_REQ: int
    MAX_CONCUR_REQ: int

    def download_many(
        self, cc_list: Sequence[str], settings: Settings, tracker: Tracker
    ) -> None: ...


def load_mode(name: str) -> Mode:
    """The module of mode `name`, imported only when asked for."""
    module: ModuleType = importlib.import_module(MODES[name])
    return cast(Mode, module)


def effective_concurrency(requested: int, most: int, n_codes: int) -> int:
    """The connections a run uses: as `requested`, but at most `most` (the mode's
    MAX_CONCUR_REQ), never more than there are flags, and at least one; and no
    more than the descriptor limit holds (``ulimit -n``), lifted first towards
    the hard limit if the run needs more (see `descriptor_note`). Under a hard
    ``ulimit -n 200``, 676 flags at ``-m 1000`` get (200 - 64) / 2 = 68.
    """
    wanted = _capped(requested, most, n_codes)
    limit = portable.raise_open_file_limit(_descriptors(wanted))
    if limit is None:
        return wanted
    return max(1, min(wanted, (limit - DESCRIPTOR_RESERVE) // _PER_REQUEST))


def descriptor_note(requested: int, most: int, n_codes: int) -> str | None:
    """One line when the descriptor limit lowered `effective_concurrency`."""
    wanted = _capped(requested, most, n_codes)
    used = effective_concurrency(requested, most, n_codes)
    if used >= wanted:
        return None
    return (
        f"flags2: only {used} of the {wanted} connections asked for fit the"
        f" descriptor limit (ulimit -n {portable.open_file_limit()}); raise it"
        f" (ulimit -n {_descriptors(wanted)}) to use them all"
    )


def _capped(requested: int, most: int, n_codes: int) -> int:
    return max(1, min(requested, most, n_codes))


def _descriptors(concurrency: int) -> int:
    return concurrency * _PER_REQUEST + DESCRIPTOR_RESERVE


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """The heap so far (the imports: modules, classes, functions) out of the
    collector's sight while the downloads run.

    A run makes objects fast (connections, tasks, answers), so the collector
    runs often, and each full collection walked every import's objects too:
    about 5% of an ``-e -m 1000`` run's CPU. They are never garbage, and
    freezing costs one pass; thawed after, for a caller that goes on.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run(
    mode: str,
    cc_list: Sequence[str],
    settings: Settings,
    *,
    json_path: str | None = None,
    serve: bool = True,
) -> int:
    """Download `cc_list` and report; returns the exit status."""
    module = load_mode(mode)
    tracker = Tracker(cc_list, settings)
    # With --json -, stdout carries the JSON alone; the reports go to stderr.
    human = sys.stderr if json_path == "-" else sys.stdout
    with _bundled_server(settings, serve), contextlib.redirect_stdout(human):
        initial_report(cc_list, settings)
        human.flush()  # seen at once in a pipe or a log, before a long wait
        if (
            cause := unresolvable(settings.base_url, tracker.proxy, settings.timeout)
        ) is not None:
            tracker.stop_before(cause)  # no request could go anywhere
        else:
            with _frozen_heap():
                module.download_many(cc_list, settings, tracker)
        if tracker.stopped:
            advice = f"; {_advice(tracker, serve)}" if tracker.unreachable else ""
            print(f"flags2: {tracker.stopped}{advice}", file=sys.stderr)
        final_report(tracker)
        if tracker.counter[DownloadStatus.ERROR] and not tracker.unreachable:
            _hint_if_down(tracker, serve)
        human.flush()  # the report lands before the JSON, even on a shared tty
    written = json_path is None or _write_json(run_record(tracker, mode), json_path)
    if tracker.interrupted:
        return EXIT_INTERRUPTED
    failed = tracker.counter[DownloadStatus.ERROR] or tracker.stopped or not written
    return EXIT_ERRORS if failed else EXIT_OK


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "localhost", parts.port or default


@contextlib.contextmanager
def _bundled_server(settings: Settings, serve: bool) -> Iterator[None]:
    kind = BUNDLED.get(settings.site)
    if not serve or kind is None:
        yield
        return
    from flags2.servers.launch import LaunchError, shared

    host, port = _host_port(settings.base_url)
    with contextlib.ExitStack() as stack:
        # A server already listening is used as it is; one started here serves
        # on after this run while another run still uses it (flags2.servers.lease).
        try:
            running = stack.enter_context(shared(kind, host=host, port=port))
        except LaunchError as exc:  # every flag will then say why it failed
            print(f"flags2: could not start the bundled server: {exc}", file=sys.stderr)
        else:
            if running is not None:  # started here, not found running
                seeded = f" (seed {running.seed})" if kind != "local" else ""
                print(
                    f"flags2: nothing answered on {host}:{port}, so the bundled "
                    f"{settings.site} server{seeded} runs for this command;"
                    " --no-serve turns this off",
                    file=sys.stderr,
                )
        yield


def _hint_if_down(tracker: Tracker, serve: bool) -> None:
    """Advice when nothing answered, judged from the results alone.

    Probing the server again would cost a second wait on a server that never
    answers (a dropped SYN, a DNS blackhole).
    """
    if tracker.answered or tracker.no_answers < tracker.counter[DownloadStatus.ERROR]:
        return
    where = redact(tracker.settings.base_url)
    if tracker.proxy is not None:
        where += f" through proxy {tracker.proxy}"
    advice = _advice(tracker, serve)
    print(f"hint: nothing answers at {where}; {advice}", file=sys.stderr)


def _advice(tracker: Tracker, serve: bool) -> str:
    kind = BUNDLED.get(tracker.settings.site)
    if tracker.proxy is not None:
        return "is the proxy running?"
    if kind is not None and not serve:
        return f"start it with 'flags2 serve {kind}', or drop --no-serve"
    return "is the server running?"


def _write_json(record: dict[str, object], json_path: str) -> bool:
    text = json.dumps(record, indent=2) + "\n"
    if json_path == "-":
        sys.stdout.write(text)
        return True
    try:
        Path(json_path).write_text(text, encoding="utf-8")
    except OSError as exc:  # the flags are saved; say what was not
        print(
            f"flags2: could not write --json {json_path}: {exc.strerror}",
            file=sys.stderr,
        )
        return False
    return True
