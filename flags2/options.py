"""The options of ``flags2 download`` and the book's scripts, declared once.

Each is an ``Annotated`` type for a typer command parameter; range and path
checks are typer's own, so their errors read like every other usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flags2 import __version__
from flags2.pace import RateLimit, parse_rate
from flags2.settings import DEFAULT_SERVER, MAX_RETRIES, MODES, SERVERS

__all__ = [
    "AllOpt",
    "CcArg",
    "DestOpt",
    "EveryOpt",
    "Http11Opt",
    "JsonOpt",
    "LimitOpt",
    "MapOpt",
    "MaxReqOpt",
    "ModeOpt",
    "NamesOpt",
    "NoServeOpt",
    "RateOpt",
    "RetriesOpt",
    "ServerOpt",
    "SkipExistingOpt",
    "TimeoutOpt",
    "VerboseOpt",
    "VersionOpt",
]


def _version(value: bool) -> None:
    if value:
        print(f"flags2 {__version__}")
        raise typer.Exit()


def _rate(text: str) -> RateLimit:
    try:
        return parse_rate(text)
    except ValueError as exc:  # typer would drop the reason and show the value
        raise typer.BadParameter(str(exc)) from None


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
    typer.Option("-l", "--limit", metavar="N", min=1, help="Limit to N first codes."),
]
MaxReqOpt = Annotated[
    int | None,
    typer.Option(
        "-m",
        "--max_req",
        "--max-req",
        metavar="CONCURRENT",
        min=1,
        help="Maximum concurrent requests (default: the mode's: 1, 30, 5, or"
        " one process per CPU).",
        show_default=False,
    ),
]
ServerOpt = Annotated[
    str, typer.Option("-s", "--server", metavar="LABEL", help=_SERVER_HELP)
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="Output detailed progress info.")
]


def _mode(value: str) -> str:
    # A callback, not an Enum or click's Choice: the mode list stays the one
    # in settings, and only typer's public API is used.
    name = value.lower()
    if name not in MODES:
        choices = ", ".join(repr(mode) for mode in MODES)
        raise typer.BadParameter(f"{value!r} is not one of {choices}.")
    return name


ModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        help="Concurrency model.",
        metavar="[" + "|".join(MODES) + "]",
        callback=_mode,
    ),
]
MapOpt = Annotated[
    bool,
    typer.Option(
        "--map",
        help="Take results with executor.map, in code order, not as they"
        " complete (threadpool and processpool modes).",
    ),
]
DestOpt = Annotated[
    Path,
    typer.Option(
        "-d",
        "--dest",
        metavar="DIR",
        file_okay=False,
        help="Save flags here (created if missing).",
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
        "--retries",
        metavar="N",
        min=0,
        max=MAX_RETRIES,
        help="Retry transient failures N times (never 404).",
    ),
]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json", metavar="PATH", help="Write a JSON record of the run (- for stdout)."
    ),
]
SkipExistingOpt = Annotated[
    bool,
    typer.Option(
        "--skip-existing",
        help="Do not download a flag already saved whole in --dest.",
    ),
]
NamesOpt = Annotated[
    bool,
    typer.Option(
        "--names",
        help="Save as the country's name from its metadata.json (Brazil.gif),"
        " as the book's flags3.",
    ),
]
RateOpt = Annotated[
    RateLimit | None,
    typer.Option(
        "--rate",
        metavar="N/U",
        parser=_rate,
        help="Start at most N requests per second, minute or hour (U: s, m, h),"
        " evenly spaced.",
        show_default=False,
    ),
]
Http11Opt = Annotated[
    bool,
    typer.Option(
        "--http1.1",
        help="Use HTTP/1.1 only; https otherwise offers HTTP/2 (ALPN), as curl.",
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
