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
import signal
import sys
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn, TextIO
from urllib.parse import urlsplit

import typer

from flags2 import __version__
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
_EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell shows for a SIGTERM death


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
    with _sigterm_as_ctrl_c() as terminated:
        try:
            code = runner.run(
                mode.value, cc_list, settings, json_path=json, serve=not no_serve
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


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Run the bundled LOCAL, DELAY and ERROR servers (see: flags2 serve --help)."""
    from servers.cli import main as serve_main

    raise typer.Exit(serve_main(list(ctx.args), prog="flags2 serve"))


_BENCH_MODES = "sequential,threadpool,asyncio"


@app.command(no_args_is_help=False)
def bench(
    cc: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CC]...",
            help="Country codes or letters: one code set of the matrix.",
            show_default=False,
        ),
    ] = None,
    all_cc: Annotated[
        bool, typer.Option("-a", "--all", help="Add the 194 codes AD..ZW as a set.")
    ] = False,
    every: Annotated[
        bool, typer.Option("-e", "--every", help="Add all 676 codes AA..ZZ as a set.")
    ] = False,
    limit: LimitOpt = None,
    modes: Annotated[
        str | None,
        typer.Option(
            "--modes",
            metavar="LIST",
            help=f"Comma list of modes (default {_BENCH_MODES}); curl too, with --url.",
            show_default=False,
        ),
    ] = None,
    server_kinds: Annotated[
        str | None,
        typer.Option(
            "--servers",
            metavar="LIST",
            help="Comma list of bundled servers: local, delay, error (default delay).",
            show_default=False,
        ),
    ] = None,
    max_req: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--max-req",
            "--max_req",
            metavar="LIST",
            help="Comma list of -m values, e.g. 5,30,1000 (default: each mode's).",
            show_default=False,
        ),
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", metavar="N", help="Runs per cell.")
    ] = 3,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="N",
            help="Seed of the servers' delays and faults (default: random, printed).",
            show_default=False,
        ),
    ] = None,
    min_delay: Annotated[
        float,
        typer.Option("--min-delay", metavar="S", help="DELAY/ERROR shortest delay."),
    ] = 0.1,
    max_delay: Annotated[
        float,
        typer.Option("--max-delay", metavar="S", help="DELAY/ERROR longest delay."),
    ] = 0.4,
    error_rate: Annotated[
        float,
        typer.Option("--error-rate", metavar="RATE", help="ERROR: share faulted, 0-1."),
    ] = 0.25,
    faults: Annotated[
        str,
        typer.Option(
            "--faults", metavar="KINDS", help="ERROR: fault kinds, e.g. teapot,reset."
        ),
    ] = "teapot",
    retries: RetriesOpt = 0,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Bench an external server at this base URL instead (no ideal).",
            show_default=False,
        ),
    ] = None,
    json: Annotated[
        Path | None,
        typer.Option("--json", metavar="PATH", help="Write every result as JSON."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="PATH", help="Draw a timeline (.png or .svg; matplotlib)."
        ),
    ] = None,
) -> None:
    """Compare the modes: a matrix of runs, each in its own process, vs the ideal.

    Each run gets a fresh bundled server seeded alike, so every mode meets the
    same delays, and the best possible time (ideal) is known. With no CC, -a,
    -e, -l, --modes or -m, the demo runs: POP20 in each mode at its default -m,
    then threadpool and asyncio over -e at -m 1000 (under a minute on 2 cores).
    """
    from flags2 import bench as bench_mod
    from servers.options import ServerOptions, parse_faults
    from servers.plan import new_seed

    if repeat < 1:
        _usage_error(f"--repeat must be >= 1, not {repeat}")
    if seed is not None and seed < 0:
        _usage_error(f"--seed must be >= 0, not {seed}")
    if limit is not None and limit < 1:
        _usage_error("-l/--limit N must be >= 1")
    if not timeout > 0:
        _usage_error(f"--timeout must be a positive number of seconds, not {timeout}")
    if retries < 0:
        _usage_error(f"--retries must be >= 0, not {retries}")
    if url is not None:
        if server_kinds is not None:
            _usage_error("--url and --servers exclude each other")
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            _usage_error(f"--url {url!r}: not an http(s):// base URL")
        url = url.rstrip("/")
    for path, what in ((json, "--json"), (plot, "--plot")):
        if path is not None and not path.parent.is_dir():
            _usage_error(f"{what}: folder {str(path.parent)!r} does not exist")
    if plot is not None:
        from flags2.plot import SUFFIXES, PlotUnavailable, check_available

        if plot.suffix.lower() not in SUFFIXES:
            _usage_error(f"--plot {str(plot)!r}: the name must end in .png or .svg")
        try:
            check_available()
        except PlotUnavailable as exc:
            print(f"flags2 bench: {exc}", file=sys.stderr)
            raise typer.Exit(_EXIT_USAGE) from None
    try:
        options = ServerOptions(
            seed=new_seed() if seed is None else seed,
            min_delay=min_delay,
            max_delay=max_delay,
            error_rate=error_rate,
            faults=parse_faults(faults),
        )
        demo = not (cc or all_cc or every or limit or modes or max_req)
        kinds = ["url"] if url else bench_mod.parse_servers(server_kinds or "delay")
        if demo:
            cells = bench_mod.demo_cells(kinds)
        else:
            cells = bench_mod.matrix(
                bench_mod.parse_modes(modes or _BENCH_MODES, url=url),
                kinds,
                bench_mod.parse_max_req(max_req) if max_req else None,
                bench_mod.code_sets(cc or [], all_cc, every, limit),
            )
    except ValueError as exc:
        _usage_error(str(exc))
    settings = bench_mod.BenchSettings(
        cells=cells,
        server=options,
        repeat=repeat,
        retries=retries,
        timeout=timeout,
        url=url,
        json_path=json,
        plot_path=plot,
    )
    raise typer.Exit(bench_mod.run_bench(settings))


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
