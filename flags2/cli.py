"""The command line: ``flags2 download|serve|bench`` and the book's three scripts.

    $ flags2 download -s DELAY -e -m 1000
    $ flags2-threadpool -al 100          # the book's flags2_threadpool.py
    $ flags2 serve                       # LOCAL, DELAY and ERROR on 8000-8002

This module only parses and checks; a run itself is :func:`flags2.runner.run`.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import typer

from flags2 import stdio
from flags2.bench.command import bench
from flags2.codes import POP20_CC, expand_cc_args
from flags2.options import (
    AllOpt,
    CcArg,
    DestOpt,
    EveryOpt,
    Http11Opt,
    JsonOpt,
    LimitOpt,
    MapOpt,
    MaxReqOpt,
    ModeOpt,
    NamesOpt,
    NoServeOpt,
    RateOpt,
    RetriesOpt,
    ServerOpt,
    SkipExistingOpt,
    TimeoutOpt,
    VerboseOpt,
    VersionOpt,
)
from flags2.settings import (
    DEFAULT_DEST,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    MAP_MODES,
    SERVERS,
    Settings,
)
from flags2.urls import BadURL, check_base_url, check_proxies, redact

__all__ = [
    "app",
    "main",
    "main_asyncio",
    "main_processpool",
    "main_sequential",
    "main_threadpool",
    "mode_app",
]

_EXIT_USAGE = 2
_EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell shows for a SIGTERM death
# -h as well as --help, as the book's argparse scripts have.
_HELP = {"help_option_names": ["-h", "--help"]}

# Every app's: plain help and errors, no shell-completion commands.
_APP_OPTIONS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": _HELP,
}


def _top(version: VersionOpt = False) -> None:
    """Download country flags sequentially, with threads, processes or asyncio."""


def download(
    cc: CcArg = None,
    all_cc: AllOpt = False,
    every: EveryOpt = False,
    limit: LimitOpt = None,
    max_req: MaxReqOpt = None,
    server: ServerOpt = DEFAULT_SERVER,
    verbose: VerboseOpt = False,
    mode: ModeOpt = "asyncio",
    dest: DestOpt = DEFAULT_DEST,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    retries: RetriesOpt = 0,
    json: JsonOpt = None,
    skip_existing: SkipExistingOpt = False,
    names: NamesOpt = False,
    rate: RateOpt = None,
    executor_map: MapOpt = False,
    no_serve: NoServeOpt = False,
    http1_1: Http11Opt = False,
    version: VersionOpt = False,
) -> None:
    """Download flags for country codes. Default: top 20 countries by population."""
    from flags2 import runner

    if not 0 < timeout < math.inf:  # typer's range would let nan through
        _usage_error(f"--timeout must be a positive number of seconds, not {timeout}")
    label, base_url = _parse_server(server)
    try:
        check_proxies()
    except BadURL as exc:
        _usage_error(str(exc))
    cc_args = cc or ([] if all_cc or every else POP20_CC)
    try:
        cc_list = expand_cc_args(every, all_cc, cc_args, limit)
    except ValueError as exc:
        _usage_error(str(exc))
    if not cc_list:
        _usage_error("no country codes to download")
    if executor_map and mode not in MAP_MODES:
        _usage_error(f"--map is for the {' and '.join(MAP_MODES)} modes, not {mode}")
    if json is not None:
        _check_json(json)
    _check_dest(dest)  # last: a usage error leaves nothing on disk

    module = runner.load_mode(mode)
    requested = max_req or module.DEFAULT_CONCUR_REQ
    concurrency = runner.effective_concurrency(
        requested, module.MAX_CONCUR_REQ, len(cc_list)
    )
    if note := runner.descriptor_note(requested, module.MAX_CONCUR_REQ, len(cc_list)):
        print(note, file=sys.stderr)
    settings = Settings(
        base_url=base_url,
        site=label,
        dest=dest,
        concurrency=concurrency,
        verbose=verbose,
        timeout=timeout,
        retries=retries,
        skip_existing=skip_existing,
        names=names,
        rate=rate,
        executor_map=executor_map,
        http2=not http1_1,
    )
    with _sigterm_as_ctrl_c() as terminated:
        try:
            code = runner.run(
                mode, cc_list, settings, json_path=json, serve=not no_serve
            )
        except KeyboardInterrupt:  # before or after the downloads themselves
            code = runner.EXIT_INTERRUPTED
    if code == runner.EXIT_INTERRUPTED and terminated:
        code = _EXIT_TERMINATED
    raise typer.Exit(code)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """SIGTERM stops a download as Ctrl-C does: report, ``--json``, no temporaries.

    Its handler raises KeyboardInterrupt in the main thread, where every mode
    already turns Ctrl-C into cancelled flags; the list it yields is non-empty
    once SIGTERM came, so the exit status can say which signal it was. SIGINT
    is not touched: one ignored from the start (a shell's background job)
    stays ignored. A SIGTERM ignored from the start stays ignored too.
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        yield received
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download_app() -> typer.Typer:
    """``flags2`` with its one command a run needs: what `main` parses a
    download with, so that typer converts no other command's options (a
    millisecond and a half of every start); `app` adds the others to it."""
    group = typer.Typer(name="flags2", help=_top.__doc__, no_args_is_help=True,
                        **_APP_OPTIONS)  # fmt: skip
    group.callback()(_top)
    group.command(no_args_is_help=False)(download)
    return group


app = _download_app()


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Run the bundled LOCAL, DELAY and ERROR servers (see: flags2 serve --help)."""
    from flags2.servers.cli import main as serve_main

    raise typer.Exit(serve_main(list(ctx.args), prog="flags2 serve"))


app.command(no_args_is_help=False)(bench)


class _UsageError(typer.BadParameter):
    """A bad value, said in one line of our own words (exit status 2)."""

    def format_message(self) -> str:
        return self.message


def _usage_error(message: str) -> NoReturn:
    raise _UsageError(message)


def _parse_server(server: str) -> tuple[str, str]:
    label = server.upper()
    if label in SERVERS:
        return label, SERVERS[label]
    if not server.lower().startswith(("http://", "https://")):
        _usage_error(
            f"-s/--server {server!r}: not one of {', '.join(sorted(SERVERS))}"
            " nor an http(s):// URL"
        )
    try:
        return "CUSTOM", check_base_url(server)
    except BadURL as exc:
        _usage_error(f"-s/--server {redact(server)!r}: {exc}")


def _check_json(json: str) -> None:
    """Refuse a --json path that could not be written, before any request."""
    if json == "-":
        return
    path = Path(json)
    if not json or path.is_dir():
        _usage_error(f"--json {json!r}: a file name is needed, not a folder")
    if not path.parent.is_dir():
        _usage_error(f"--json: folder {str(path.parent)!r} does not exist")
    try:
        if path.exists():  # opened without O_TRUNC: nothing changes yet
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # a fifo: no wait
        else:
            _probe(path.parent)
    except OSError as exc:
        _usage_error(f"--json {json!r} is not writable: {exc.strerror}")


def _check_dest(dest: Path) -> None:
    """Create `dest` if it passes; a folder that cannot be written is refused."""
    existing = next(p for p in [dest, *dest.parents] if os.path.lexists(p))
    if existing == dest and not dest.is_dir():  # a device, a broken link
        _usage_error(f"-d/--dest {str(dest)!r} is not a folder")
    try:
        if existing != dest:
            _probe(existing)  # creating nothing yet when a later check fails
        dest.mkdir(parents=True, exist_ok=True)
        _probe(dest)
    except OSError as exc:
        _usage_error(f"-d/--dest {str(dest)!r} is not writable: {exc.strerror}")


def _probe(folder: Path) -> None:
    """OSError unless a file can be created in `folder` (nothing is left)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def mode_app(mode: str) -> typer.Typer:
    """The book's script for one mode: ``download`` without ``--mode``."""
    single = typer.Typer(**_APP_OPTIONS)

    def command(**kwargs: Any) -> None:
        download(mode=mode, **kwargs)

    hints = typing.get_type_hints(download, include_extras=True)
    signature = inspect.signature(download)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints[name])
            for name, p in signature.parameters.items()
            if name != "mode"
        ]
    )
    command.__doc__ = download.__doc__
    single.command()(command)
    return single


def _run(entry: Callable[[], Any]) -> NoReturn:
    stdio.guard()
    try:
        entry()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)  # a message for Python to print
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """End the process without finalising the interpreter.

    Everything a command opens is closed by then (files, sockets, servers,
    child processes), so what finalising would still do is tear down every
    module and collect ~27,000 objects: about 35 ms of a 0.4 s download here,
    the time of 40 flags. On Ctrl-C it also matters for correctness: threads
    abandoned in a blocking read would otherwise be waited for.
    """
    if not _flushed(sys.stdout) and code == 0:
        # What Python itself does when the last flush of stdout fails (a full
        # disk, a reader gone): the output is incomplete, so not a success.
        if sys.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                print("flags2: could not write all of the output", file=sys.stderr)
        code = 120
    if not _flushed(sys.stderr) and code == 0:
        code = 120  # the hints and errors that could not be written
    os._exit(code)


def _flushed(stream: TextIO | None) -> bool:
    """Flush `stream` if there is one; False if what it held was lost."""
    if stream is None:  # started with that descriptor closed
        return True
    try:
        stream.flush()
    except (OSError, ValueError):  # a closed pipe, a full disk, a closed file
        return False
    return not stdio.lost(stream)


def main() -> NoReturn:
    chosen = _download_app() if sys.argv[1:2] == ["download"] else app
    _run(lambda: chosen(prog_name="flags2"))


def main_sequential() -> NoReturn:
    _run(lambda: mode_app("sequential")(prog_name="flags2-sequential"))


def main_threadpool() -> NoReturn:
    _run(lambda: mode_app("threadpool")(prog_name="flags2-threadpool"))


def main_asyncio() -> NoReturn:
    _run(lambda: mode_app("asyncio")(prog_name="flags2-asyncio"))


def main_processpool() -> NoReturn:
    _run(lambda: mode_app("processpool")(prog_name="flags2-processpool"))
