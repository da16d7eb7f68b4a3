"""The command line: ``flags2 download|serve|bench`` and the book's three scripts.

    $ flags2 download -s DELAY -e -m 1000
    $ flags2-threadpool -al 100          # the book's flags2_threadpool.py
    $ flags2 serve                       # LOCAL, DELAY and ERROR on 8000-8002

This module only parses and checks; a run itself is :func:`flags2.runner.run`.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import os
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO
from urllib.parse import urlsplit

import typer

from flags2 import __version__
from flags2.bench.command import bench
from flags2.codes import POP20_CC, expand_cc_args
from flags2.settings import (
    DEFAULT_DEST,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    SERVERS,
    Settings,
)

__all__ = [
    "Mode",
    "app",
    "main",
    "main_asyncio",
    "main_sequential",
    "main_threadpool",
    "mode_app",
]

_EXIT_USAGE = 2


class Mode(enum.StrEnum):
    sequential = "sequential"
    threadpool = "threadpool"
    asyncio = "asyncio"


app = typer.Typer(
    name="flags2",
    help="Download country flags sequentially, with threads, or with asyncio.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"flags2 {__version__}")
        raise typer.Exit()


_SERVER_HELP = (
    f"Server to hit: {', '.join(sorted(SERVERS))} (any case) or an http(s):// base"
    f" URL (default={DEFAULT_SERVER})."
)

CcArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[CC]...",
        help="Country code or 1st letter (eg. B for BA...BZ). "
        "Default: top 20 countries by population.",
        show_default=False,
    ),
]
AllOpt = Annotated[
    bool, typer.Option("-a", "--all", help="Get all available flags (AD to ZW).")
]
EveryOpt = Annotated[
    bool,
    typer.Option("-e", "--every", help="Get flags for every possible code (AA...ZZ)."),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("-l", "--limit", metavar="N", help="Limit to N first codes."),
]
MaxReqOpt = Annotated[
    int | None,
    typer.Option(
        "-m",
        "--max_req",
        "--max-req",
        metavar="CONCURRENT",
        help="Maximum concurrent requests (default: the mode's, 1, 30 or 5).",
        show_default=False,
    ),
]
ServerOpt = Annotated[
    str, typer.Option("-s", "--server", metavar="LABEL", help=_SERVER_HELP)
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="Output detailed progress info.")
]
ModeOpt = Annotated[
    Mode, typer.Option("--mode", help="Concurrency model.", case_sensitive=False)
]
DestOpt = Annotated[
    Path,
    typer.Option(
        "-d", "--dest", metavar="DIR", help="Save flags here (created if missing)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Connect and read timeout; 3.1 reproduces the book.",
    ),
]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries", metavar="N", help="Retry transient failures N times (never 404)."
    ),
]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json", metavar="PATH", help="Write a JSON record of the run (- for stdout)."
    ),
]
NoServeOpt = Annotated[
    bool,
    typer.Option(
        "--no-serve",
        help="Never start the bundled server, even if nothing answers on its port.",
    ),
]
VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
]


@app.command(no_args_is_help=False)
def download(
    cc: CcArg = None,
    all_cc: AllOpt = False,
    every: EveryOpt = False,
    limit: LimitOpt = None,
    max_req: MaxReqOpt = None,
    server: ServerOpt = DEFAULT_SERVER,
    verbose: VerboseOpt = False,
    mode: ModeOpt = Mode.asyncio,
    dest: DestOpt = DEFAULT_DEST,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    retries: RetriesOpt = 0,
    json: JsonOpt = None,
    no_serve: NoServeOpt = False,
    version: VersionOpt = False,
) -> None:
    """Download flags for country codes. Default: top 20 countries by population."""
    from flags2 import runner

    if limit is not None and limit < 1:
        _usage_error("-l/--limit N must be >= 1")
    if max_req is not None and max_req < 1:
        _usage_error("-m/--max_req CONCURRENT must be >= 1")
    if not timeout > 0:
        _usage_error(f"--timeout must be a positive number of seconds, not {timeout}")
    if retries < 0:
        _usage_error(f"--retries must be >= 0, not {retries}")
    label, base_url = _parse_server(server)
    cc_args = cc or ([] if all_cc or every else POP20_CC)
    try:
        cc_list = expand_cc_args(every, all_cc, cc_args, limit)
    except ValueError as exc:
        _usage_error(str(exc))
    if not cc_list:
        _usage_error("no country codes to download")
    _check_dest(dest)
    if json not in (None, "-") and not Path(json).parent.is_dir():
        _usage_error(f"--json: folder {str(Path(json).parent)!r} does not exist")

    module = runner.load_mode(mode.value)
    requested = max_req or module.DEFAULT_CONCUR_REQ
    settings = Settings(
        base_url=base_url,
        server=label,
        dest=dest,
        concurrency=min(requested, module.MAX_CONCUR_REQ, len(cc_list)),
        verbose=verbose,
        timeout=timeout,
        retries=retries,
    )
    try:
        code = runner.run(
            mode.value, cc_list, settings, json_path=json, serve=not no_serve
        )
    except KeyboardInterrupt:  # before or after the downloads themselves
        code = runner.EXIT_INTERRUPTED
    raise typer.Exit(code)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Run the bundled LOCAL, DELAY and ERROR servers (see: flags2 serve --help)."""
    from servers.cli import main as serve_main

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
    parts = urlsplit(server)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        _usage_error(
            f"-s/--server {server!r}: not one of {', '.join(sorted(SERVERS))}"
            " nor an http(s):// URL"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        _usage_error(f"-s/--server {server!r}: bad port")
    return "CUSTOM", server.rstrip("/")


def _check_dest(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        _usage_error(f"-d/--dest {str(dest)!r} is not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dest):
            pass
    except OSError as exc:
        _usage_error(f"-d/--dest {str(dest)!r} is not writable: {exc.strerror}")


def mode_app(mode: Mode) -> typer.Typer:
    """The book's script for one mode: ``download`` without ``--mode``."""
    single = typer.Typer(
        add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
    )

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
    _flushed(sys.stderr)
    os._exit(code)


def _flushed(stream: TextIO | None) -> bool:
    """Flush `stream` if there is one; False if what it held was lost."""
    if stream is None:  # started with that descriptor closed
        return True
    try:
        stream.flush()
    except (OSError, ValueError):  # a closed pipe, a full disk, a closed file
        return False
    return True


def main() -> NoReturn:
    _run(lambda: app(prog_name="flags2"))


def main_sequential() -> NoReturn:
    _run(lambda: mode_app(Mode.sequential)(prog_name="flags2-sequential"))


def main_threadpool() -> NoReturn:
    _run(lambda: mode_app(Mode.threadpool)(prog_name="flags2-threadpool"))


def main_asyncio() -> NoReturn:
    _run(lambda: mode_app(Mode.asyncio)(prog_name="flags2-asyncio"))
