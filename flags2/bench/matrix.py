"""The cells of a bench: its comma-list options parsed, crossed into a matrix.

Every parser raises ValueError with the one-line message the command line
shows (exit status 2)::

    >>> [c.mode for c in matrix(parse_modes("sequential,asyncio", url=None),
    ...     ["delay"], None, code_sets([], False, False, None))]
    ['sequential', 'asyncio']
"""

from __future__ import annotations

from collections.abc import Sequence

from flags2.bench.model import ARIA2C, PEERS, Cell, CodeSet
from flags2.codes import POP20_CC, expand_cc_args
from flags2.runner import MODES, effective_concurrency, load_mode
from flags2.servers import tls
from flags2.servers.options import SERVER_KINDS
from flags2.settings import MAP_MODES

__all__ = [
    "BENCH_SERVERS",
    "DEFAULT_MODES",
    "HTTP_VERSIONS",
    "MAP_SUFFIX",
    "PEER_MAX_PARALLEL",
    "base_mode",
    "code_sets",
    "demo_cells",
    "make_cell",
    "matrix",
    "parse_http",
    "parse_max_req",
    "parse_modes",
    "parse_servers",
]

DEFAULT_MODES = ",".join(MODES)
BENCH_SERVERS = (*SERVER_KINDS, tls.KIND)
"""``--servers``: the bundled kinds, and DELAY over TLS (``flags2[tls]``)."""
MAP_SUFFIX = "+map"
"""``--modes threadpool+map``: that mode run with ``download --map``."""
_MAP_VARIANTS = [mode + MAP_SUFFIX for mode in MAP_MODES]


def base_mode(mode: str) -> tuple[str, list[str]]:
    """The ``download --mode`` of a bench mode, and the options it adds.

    >>> base_mode("processpool+map")
    ('processpool', ['--map'])
    """
    if mode in _MAP_VARIANTS:
        return mode.removesuffix(MAP_SUFFIX), ["--map"]
    return mode, []


# Each peer's -m when none is given, and the most it really runs at once.
_PEER_DEFAULT_M = 30  # the downloader issue compares with --parallel-max 30
# curl silently caps --parallel-max at 300; aria2c's -j has no cap of its own,
# so it gets the concurrent modes' 1000.
PEER_MAX_PARALLEL = {"curl": 300, "aria2c": 1000}


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_modes(text: str, *, url: str | None) -> list[str]:
    """``--modes``: a comma list of modes; with ``--url``, peers (curl, aria2c) too."""
    modes = [m.lower() for m in _split(text)]
    if not modes:
        raise ValueError("--modes: no mode given")
    for mode in modes:
        if mode in PEERS and url is None:
            raise ValueError(
                f"--modes {mode} needs --url: {mode} is compared on an external server"
            )
        if mode not in MODES and mode not in PEERS and mode not in _MAP_VARIANTS:
            raise ValueError(
                f"--modes: unknown mode {mode!r} (choose from"
                f" {', '.join([*MODES, *_MAP_VARIANTS])};"
                f" {', '.join(PEERS)} with --url)"
            )
    return list(dict.fromkeys(modes))


HTTP_VERSIONS = ("1.1", "2")
"""``--http``: HTTP/1.1 only (``download --http1.1``), or HTTP/2 offered."""


def parse_http(text: str, *, https: bool) -> list[str]:
    """``--http``: a comma list of 1.1 and 2; 2 only where every server is https
    (an https ``--url``, or ``--servers tls``).

    flags2 offers HTTP/2 by ALPN in the TLS handshake, as curl does, and never
    in the clear (h2c): over plain http a "2" row would be HTTP/1.1 again,
    under a false name, so it is refused instead of run.
    """
    versions = [v.lower().removeprefix("http/") for v in _split(text)]
    if not versions:
        raise ValueError("--http: no version given")
    for version in versions:
        if version not in HTTP_VERSIONS:
            raise ValueError(
                f"--http: unknown version {version!r} (choose from 1.1, 2)"
            )
    if "2" in versions and not https:
        raise ValueError(
            "--http 2 needs an https --url or --servers tls: HTTP/2 is offered"
            " in the TLS handshake (ALPN), never over plain http"
        )
    return list(dict.fromkeys(versions))


def parse_servers(text: str) -> list[str]:
    """``--servers``: a comma list of local, delay, error, tls."""
    kinds = [k.lower() for k in _split(text)]
    if not kinds:
        raise ValueError("--servers: no server given")
    for kind in kinds:
        if kind not in BENCH_SERVERS:
            raise ValueError(
                f"--servers: unknown server {kind!r}"
                f" (choose from {', '.join(BENCH_SERVERS)})"
            )
    return list(dict.fromkeys(kinds))


def parse_max_req(text: str) -> list[int]:
    """``--max-req``: a comma list of integers >= 1."""
    items = _split(text)
    if not items:
        raise ValueError("--max-req: no value given")
    values = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"--max-req: {item!r} is not an integer") from None
        if value < 1:
            raise ValueError(f"--max-req: each value must be >= 1, not {value}")
        values.append(value)
    return list(dict.fromkeys(values))


def code_sets(
    cc: Sequence[str], all_cc: bool, every: bool, limit: int | None
) -> list[CodeSet]:
    """The code sets of the matrix: each of CC..., ``-a``, ``-e`` given is one.

    Unlike ``download``, where ``-e`` wins over ``-a`` and both over CC, a bench
    compares them: ``-a -e`` makes two rows per mode. Nothing given is POP20.
    Raises ValueError on a bad code.
    """
    tail = ("-l", str(limit)) if limit is not None else ()
    sets: list[tuple[str, tuple[str, ...], list[str]]] = []
    if cc:
        codes = expand_cc_args(False, False, cc, limit)
        sets.append((" ".join(c.upper() for c in cc), tuple(cc), codes))
    if all_cc:
        sets.append(("-a", ("-a",), expand_cc_args(False, True, [], limit)))
    if every:
        sets.append(("-e", ("-e",), expand_cc_args(True, False, [], limit)))
    if not sets:
        sets.append(("POP20", (), expand_cc_args(False, False, POP20_CC, limit)))
    return [
        CodeSet(" ".join([label, *tail]), args + tail, tuple(codes))
        for label, args, codes in sets
    ]


def make_cell(
    mode: str,
    server: str,
    max_req: int | None,
    codes: CodeSet,
    http: str | None = None,
) -> Cell:
    """One cell, its -m defaulted and capped as the mode itself would."""
    if mode in PEERS:
        requested = max_req or _PEER_DEFAULT_M
        most = PEER_MAX_PARALLEL[mode]
    else:
        module = load_mode(base_mode(mode)[0])
        requested = max_req or module.DEFAULT_CONCUR_REQ
        most = module.MAX_CONCUR_REQ
        if most == 1:
            requested = 1  # sequential: every -m is the same run
    concurrency = effective_concurrency(requested, most, len(codes.codes))
    return Cell(mode, server, requested, codes, concurrency, http)


def matrix(
    modes: Sequence[str],
    servers: Sequence[str],
    max_reqs: Sequence[int] | None,
    sets: Sequence[CodeSet],
    http: Sequence[str] | None = None,
) -> tuple[Cell, ...]:
    """Every combination, each mode at its default -m when `max_reqs` is None.

    Cells that would be the same run (sequential at any -m) appear once. With
    `http` (``--http 1.1,2``), each cell is one row per version, side by side;
    aria2c, which speaks HTTP/1.1 only, gets no HTTP/2 row.
    """
    levels: list[int | None] = [*max_reqs] if max_reqs else [None]
    versions: list[str | None] = [*http] if http else [None]
    cells: dict[tuple[str, str, int, CodeSet, str | None], Cell] = {}
    for server in servers:
        for codes in sets:
            for mode in modes:
                for m in levels:
                    for version in versions:
                        if mode == ARIA2C and version == "2":
                            continue
                        cell = make_cell(mode, server, m, codes, version)
                        key = (mode, server, cell.concurrency, codes, version)
                        cells.setdefault(key, cell)
    return tuple(cells.values())


def demo_cells(servers: Sequence[str]) -> tuple[Cell, ...]:
    """The default matrix: the book's two lessons in one table.

    POP20 in every mode at its default -m (sequential, threadpool 30, asyncio
    5: the "five times faster" comparison, and how -m caps asyncio), then
    threadpool and asyncio over every code AA..ZZ at -m 1000 (676 requests at
    once, where sequential would take minutes). The chapter's two experiments
    follow: processpool at the thread pool's 20 workers (as fast, for more
    memory and start-up) and threadpool with ``--map`` (the same downloads,
    reported in code order).
    """
    pop20, every = (
        code_sets([], False, False, None)[0],
        code_sets([], False, True, None)[0],
    )
    cells: list[Cell] = []
    for server in servers:
        cells += [
            make_cell(mode, server, None, pop20)
            for mode in ("sequential", "threadpool", "asyncio")
        ]
        cells += [
            make_cell(mode, server, 1000, every) for mode in ("threadpool", "asyncio")
        ]
        cells += [
            make_cell("processpool", server, 20, pop20),
            make_cell("threadpool" + MAP_SUFFIX, server, None, pop20),
        ]
    return tuple(cells)
