"""The ``flags2 bench`` command: its options, checked, made into `BenchSettings`.

:mod:`flags2.cli` registers `bench` on its app; everything else the bench
needs is imported when it runs, so ``flags2 download`` never pays for it::

    $ flags2 bench --seed 7 --plot timeline.png     # the demo
    $ flags2 bench -e -m 1000 --modes threadpool,asyncio --min-delay 0.5 --max-delay 5
    $ flags2 bench --url http://127.0.0.1:8088/flags -a --modes asyncio,curl,aria2c
    $ flags2 bench --url https://localhost:8443/flags --http 1.1,2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from flags2.bench.defaults import DEFAULT_MAX_DELAY, DEFAULT_MIN_DELAY, DEFAULT_REPEAT
from flags2.settings import DEFAULT_TIMEOUT, MODES
from flags2.urls import BadURL, check_base_url, redact

__all__ = ["bench"]

_EXIT_USAGE = 2


class _UsageError(typer.BadParameter):
    """A bad value, said in one line of our own words (exit status 2)."""

    def format_message(self) -> str:
        return self.message


def _usage_error(message: str) -> NoReturn:
    raise _UsageError(message)


def _fail(message: str) -> NoReturn:
    """A one-line error of the bench itself (not of one option), exit status 2."""
    print(f"flags2 bench: {message}", file=sys.stderr)
    raise typer.Exit(_EXIT_USAGE)


CcArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[CC]...",
        help="Country codes or letters: one code set of the matrix.",
        show_default=False,
    ),
]
AllOpt = Annotated[
    bool, typer.Option("-a", "--all", help="Add the 194 codes AD..ZW as a set.")
]
EveryOpt = Annotated[
    bool, typer.Option("-e", "--every", help="Add all 676 codes AA..ZZ as a set.")
]
LimitOpt = Annotated[
    int | None,
    typer.Option("-l", "--limit", metavar="N", help="Limit each set to N first codes."),
]
ModesOpt = Annotated[
    str | None,
    typer.Option(
        "--modes",
        metavar="LIST",
        help=f"Comma list of modes (default {','.join(MODES)});"
        " threadpool+map and processpool+map run --map; curl and aria2c too,"
        " with --url.",
        show_default=False,
    ),
]
ServersOpt = Annotated[
    str | None,
    typer.Option(
        "--servers",
        metavar="LIST",
        help="Comma list of bundled servers: local, delay, error (default delay);"
        " tls: DELAY over TLS, HTTP/2 and 1.1 (flags2[tls]).",
        show_default=False,
    ),
]
MaxReqOpt = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--max-req",
        "--max_req",
        metavar="LIST",
        help="Comma list of -m values, e.g. 5,30,1000 (default: each mode's).",
        show_default=False,
    ),
]
RepeatOpt = Annotated[int, typer.Option("--repeat", metavar="N", help="Runs per cell.")]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        metavar="N",
        help="Seed of the servers' delays and faults (default: random, printed).",
        show_default=False,
    ),
]
MinDelayOpt = Annotated[
    float, typer.Option("--min-delay", metavar="S", help="DELAY/ERROR shortest delay.")
]
MaxDelayOpt = Annotated[
    float, typer.Option("--max-delay", metavar="S", help="DELAY/ERROR longest delay.")
]
ErrorRateOpt = Annotated[
    float,
    typer.Option("--error-rate", metavar="RATE", help="ERROR: share faulted, 0-1."),
]
FaultsOpt = Annotated[
    str,
    typer.Option(
        "--faults", metavar="KINDS", help="ERROR: fault kinds, e.g. teapot,reset."
    ),
]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries", metavar="N", help="Retry transient failures N times (never 404)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout", metavar="SECONDS", help="Each run's connect and read timeout."
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="Bench an external server at this base URL instead (no ideal).",
        show_default=False,
    ),
]
HttpOpt = Annotated[
    str | None,
    typer.Option(
        "--http",
        metavar="LIST",
        help="HTTP versions side by side, a row each: 1.1 (download --http1.1)"
        " and 2 (offered by ALPN: an https --url or --servers tls)."
        " Default: the download's.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    Path | None,
    typer.Option("--json", metavar="PATH", help="Write every result as JSON."),
]
PlotOpt = Annotated[
    Path | None,
    typer.Option(
        "--plot", metavar="PATH", help="Draw a timeline (.png or .svg; matplotlib)."
    ),
]


def _check_url(url: str | None, server_kinds: str | None) -> str | None:
    if url is None:
        return None
    if server_kinds is not None:
        _usage_error("--url and --servers exclude each other")
    try:
        return check_base_url(url)
    except BadURL as exc:
        _usage_error(f"--url {redact(url)!r}: {exc}")


def _check_outputs(json: Path | None, plot: Path | None) -> None:
    for path, what in ((json, "--json"), (plot, "--plot")):
        if path is not None and not path.parent.is_dir():
            _usage_error(f"{what}: folder {str(path.parent)!r} does not exist")
    if plot is not None:
        from flags2.bench.plot import SUFFIXES, PlotUnavailable, check_available

        if plot.suffix.lower() not in SUFFIXES:
            _usage_error(f"--plot {str(plot)!r}: the name must end in .png or .svg")
        try:
            check_available()
        except PlotUnavailable as exc:
            _fail(str(exc))


def bench(
    cc: CcArg = None,
    all_cc: AllOpt = False,
    every: EveryOpt = False,
    limit: LimitOpt = None,
    modes: ModesOpt = None,
    server_kinds: ServersOpt = None,
    max_req: MaxReqOpt = None,
    repeat: RepeatOpt = DEFAULT_REPEAT,
    seed: SeedOpt = None,
    min_delay: MinDelayOpt = DEFAULT_MIN_DELAY,
    max_delay: MaxDelayOpt = DEFAULT_MAX_DELAY,
    error_rate: ErrorRateOpt = 0.25,
    faults: FaultsOpt = "teapot",
    retries: RetriesOpt = 0,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    url: UrlOpt = None,
    http: HttpOpt = None,
    json: JsonOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Compare the modes: a matrix of runs, each in its own process, vs the ideal.

    Each run gets a fresh bundled server seeded alike, so every mode meets the
    same delays, and the best possible time (ideal) is known. With no CC, -a,
    -e, -l, --modes or -m, the demo runs: POP20 in each mode at its default -m,
    then threadpool and asyncio over -e at -m 1000 (under a minute on 2 cores).
    """
    from flags2.bench import matrix, session
    from flags2.bench.model import BenchSettings
    from flags2.servers.options import ServerOptions, parse_faults
    from flags2.servers.plan import new_seed
    from flags2.servers.tls import KIND as TLS
    from flags2.servers.tls import available as tls_available

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
    url = _check_url(url, server_kinds)
    _check_outputs(json, plot)
    try:
        options = ServerOptions(
            seed=new_seed() if seed is None else seed,
            min_delay=min_delay,
            max_delay=max_delay,
            error_rate=error_rate,
            faults=parse_faults(faults),
        )
        kinds = ["url"] if url else matrix.parse_servers(server_kinds or "delay")
        https = url.lower().startswith("https:") if url else kinds == [TLS]
        versions = None if http is None else matrix.parse_http(http, https=https)
        demo = not (cc or all_cc or every or limit or modes or max_req or versions)
        if demo:
            cells = matrix.demo_cells(kinds)
        else:
            chosen = matrix.parse_modes(modes or matrix.DEFAULT_MODES, url=url)
            cells = matrix.matrix(
                chosen,
                kinds,
                matrix.parse_max_req(max_req) if max_req else None,
                matrix.code_sets(cc or [], all_cc, every, limit),
                versions,
            )
        if not cells:  # aria2c alone at --http 2
            raise ValueError("--http 2: aria2c speaks HTTP/1.1 only, no row is left")
    except ValueError as exc:
        _usage_error(str(exc))
    if TLS in kinds and (missing := tls_available()) is not None:
        _fail(f"--servers tls: {missing}")
    absent = session.missing_peers([cell.mode for cell in cells])
    if absent:
        _fail(f"--modes {absent[0]}: {absent[0]} is not installed (not on PATH)")
    settings = BenchSettings(
        cells=cells,
        server=options,
        repeat=repeat,
        retries=retries,
        timeout=timeout,
        url=url,
        json_path=json,
        plot_path=plot,
    )
    raise typer.Exit(session.run_bench(settings))
