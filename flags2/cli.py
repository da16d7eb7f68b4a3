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
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO

import typer

from flags2 import stdio
from flags2.codes import POP20_CC, expand_cc_args
from flags2.options import (
    AllOpt,
    CcArg,
    DestOpt,
    EveryOpt,
    JsonOpt,
    LimitOpt,
    MaxReqOpt,
    ModeOpt,
    NoServeOpt,
    RetriesOpt,
    ServerOpt,
    TimeoutOpt,
    VerboseOpt,
    VersionOpt,
)
from flags2.settings import (
    DEFAULT_DEST,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    MODES,
    SERVERS,
    Settings,
)
from flags2.urls import BadURL, check_base_url, check_proxies, redact

__all__ = [
    "app",
    "main",
    "main_asyncio",
    "main_sequential",
    "main_threadpool",
    "mode_app",
]

_EXIT_USAGE = 2
# -h as well as --help, as the book's argparse scripts have.
_HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="flags2",
    help="Download country flags sequentially, with threads, or with asyncio.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=_HELP,
)


@app.callback()
def _top(version: VersionOpt = False) -> None:
    """Download country flags sequentially, with threads, or with asyncio."""


@app.command(no_args_is_help=False)
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
    no_serve: NoServeOpt = False,
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
    if json is not None:
        _check_json(json)
    _check_dest(dest)  # last: a usage error leaves nothing on disk

    module = runner.load_mode(mode)
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
        code = runner.run(mode, cc_list, settings, json_path=json, serve=not no_serve)
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


_BENCH_MODES = ",".join(MODES)


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
        try:
            url = check_base_url(url)
        except BadURL as exc:
            _usage_error(f"--url {redact(url)!r}: {exc}")
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
    single = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=_HELP,
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
    _run(lambda: app(prog_name="flags2"))


def main_sequential() -> NoReturn:
    _run(lambda: mode_app("sequential")(prog_name="flags2-sequential"))


def main_threadpool() -> NoReturn:
    _run(lambda: mode_app("threadpool")(prog_name="flags2-threadpool"))


def main_asyncio() -> NoReturn:
    _run(lambda: mode_app("asyncio")(prog_name="flags2-asyncio"))
