"""Command line for the bundled servers (`flags2 serve`, `python -m flags2.servers`).

Starts LOCAL, DELAY and ERROR (or the kinds named) in one process and serves
until Ctrl-C or SIGTERM::

    $ python -m servers --seed 7
    seed 7 (replay with --seed 7); Ctrl-C stops the servers
    LOCAL  http://127.0.0.1:8000/flags  no delay
    DELAY  http://127.0.0.1:8001/flags  delay 0.5-5 s
    ERROR  http://127.0.0.1:8002/flags  delay 0.5-5 s, 25% faults: teapot
    ^Cservers stopped

    $ python -m servers error --port 9000 --faults teapot:3,reset --log
    ...
    BR delay: 2.31s 200
    CN delay: 0.87s 418 teapot

Errors (bad values, a port in use) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .lease import Lease
from .limits import limit_note, raise_descriptor_limit
from .options import (
    DEFAULT_PORTS,
    FAULT_KINDS,
    SERVER_KINDS,
    ServerOptions,
    describe_faults,
    parse_faults,
)
from .plan import new_seed
from .server import (
    FlagServer,
    ServerStartError,
    open_servers,
    serve_until_stopped,
)

__all__ = [
    "DETACHED_LINE",
    "LEASE_OPTION",
    "READY_PREFIX",
    "STOPPING_LINE",
    "SUPERVISED_FLAG",
    "add_log_arguments",
    "add_option_arguments",
    "build_parser",
    "describe",
    "main",
    "options_from_args",
    "run",
]

SUPERVISED_FLAG = "--supervised"
"""Hidden option used by `flags2.servers.launch`: report readiness as one JSON line on
stdout, ignore Ctrl-C (the parent decides) and exit when stdin reaches EOF."""

READY_PREFIX = "READY "
"""Prefix of the supervised readiness line; JSON with seed, urls and ports follows."""

LEASE_OPTION = "--lease"
"""Hidden option used by `flags2.servers.launch.shared`: once stdin reaches EOF, serve
on until no run holds the `flags2.servers.lease` file given (see that module)."""

STOPPING_LINE = "STOPPING"
"""What a supervised child says on stdout when stdin's EOF stops it."""

DETACHED_LINE = "DETACHED"
"""What a leased child says instead when other runs still use it; it then
writes nothing more to the pipes its starter is about to close."""

_held: list[Lease] = []  # the exclusive lease, kept until the servers are closed
# What a leased server takes as "its starter has gone" besides stdin's EOF.
_LEAVING_SIGNALS = ("SIGTERM", "SIGHUP")

_DESCRIPTION = """\
Serve the 194 bundled flags for the flags2 clients.

LOCAL (port 8000) answers at once; DELAY (8001) waits a seeded random delay
before each GET; ERROR (8002) is DELAY plus faults on a fraction of GETs.
With no KIND, all three start. The seed is printed at start: pass it back with
--seed to replay exactly the same delays and faults.
"""

_EPILOG = f"""\
fault kinds: {", ".join(FAULT_KINDS)} (see the README table);
  weight them as KIND:WEIGHT, e.g. --faults teapot:3,truncate:1; 'all' = every kind.
endpoints: /flags/xx/xx.gif, /flags/xx/metadata.json, directory listings,
  and GET /_stats (JSON counters: requests by status, faults, peak_in_flight, seed).
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse would print the usage block and call sys.exit(2); the contract is a
    # single line on stderr and a return value, so surface the message instead.
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _kind(text: str) -> str:
    kind = text.lower()
    if kind not in SERVER_KINDS:
        raise argparse.ArgumentTypeError(
            f"invalid server kind {text!r} (choose from {', '.join(SERVER_KINDS)})"
        )
    return kind


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid seed {text!r} (an integer)"
        ) from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {seed}")
    return seed


def _faults(text: str) -> tuple[tuple[str, float], ...]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_option_arguments(parser: argparse.ArgumentParser, *, error_rate: float) -> None:
    """Add the options shared with `slow` (everything but ports and kinds)."""
    # Only the scalar defaults are read; "." just satisfies the directory check.
    defaults = ServerOptions(directory=Path("."))
    parser.add_argument(
        "-b",
        "--bind",
        metavar="ADDR",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; 0.0.0.0 or :: for all)",
    )
    parser.add_argument(
        "-d",
        "--directory",
        metavar="DIR",
        type=Path,
        help="serve DIR instead of the bundled flags (it should hold flags/xx/xx.gif)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="seed of the delay/fault plan (default: random, printed at start)",
    )
    parser.add_argument(
        "--min-delay",
        type=_seconds,
        metavar="S",
        default=defaults.min_delay,
        help="shortest delay before a GET, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--max-delay",
        type=_seconds,
        metavar="S",
        default=defaults.max_delay,
        help="longest delay before a GET, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "-e",
        "--error-rate",
        type=_seconds,
        metavar="RATE",
        default=error_rate,
        help="share of GETs faulted, 0-1, on ERROR only (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        metavar="KINDS",
        default=defaults.faults,
        help="fault kinds to inject, optionally weighted (default: teapot)",
    )
    parser.add_argument(
        "--stall",
        type=_seconds,
        metavar="S",
        default=defaults.stall,
        help="seconds the 'stall' fault withholds the body (default: %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        metavar="S",
        default=defaults.idle_timeout,
        help="close connections idle this long, or whose request head is not"
        " complete this long after its first byte (default: %(default)s)",
    )
    parser.add_argument(SUPERVISED_FLAG, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(LEASE_OPTION, type=Path, help=argparse.SUPPRESS)


def add_log_arguments(parser: argparse.ArgumentParser, *, default_log: bool) -> None:
    """Add the mutually exclusive ``--log`` / ``-q/--quiet`` pair."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--log",
        dest="log",
        action="store_true",
        default=default_log,
        help="print one line per request, e.g. 'BR delay: 2.31s 200'"
        + (" (default)" if default_log else ""),
    )
    group.add_argument(
        "-q",
        "--quiet",
        dest="log",
        action="store_false",
        help="do not log requests" + ("" if default_log else " (default)"),
    )


def build_parser(
    prog: str | None = None, *, default_log: bool = False
) -> argparse.ArgumentParser:
    """Return the argument parser of `main` (exposed for documentation tools)."""
    parser = _Parser(
        prog=prog,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kinds",
        metavar="KIND",
        nargs="*",
        type=_kind,
        help="local, delay or error; several allowed (default: all three)",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=_port,
        metavar="P",
        help="port of the first server, the next ones on P+1, P+2 "
        "(default: local 8000, delay 8001, error 8002; 0 = any free port each)",
    )
    add_option_arguments(
        parser, error_rate=ServerOptions(directory=Path(".")).error_rate
    )
    add_log_arguments(parser, default_log=default_log)
    return parser


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """Build `ServerOptions` from parsed arguments; `ValueError` if inconsistent."""
    extra = {} if args.directory is None else {"directory": args.directory}
    return ServerOptions(
        bind=args.bind,
        seed=args.seed,
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        error_rate=args.error_rate,
        faults=args.faults,
        stall=args.stall,
        idle_timeout=args.idle_timeout,
        log=args.log,
        **extra,
    )


def _assign_ports(kinds: Sequence[str], port: int | None) -> list[tuple[str, int]]:
    if port is None:
        return [(kind, DEFAULT_PORTS[kind]) for kind in kinds]
    if port == 0:
        return [(kind, 0) for kind in kinds]
    last = port + len(kinds) - 1
    if last > 65535:
        raise ValueError(f"--port {port} leaves no room for {len(kinds)} servers")
    return [(kind, port + i) for i, kind in enumerate(kinds)]


def describe(server: FlagServer) -> str:
    """One banner line: kind, base URL and what the server does to requests."""
    opts = server.options
    if server.kind == "local":
        what = "no delay"
    else:
        what = f"delay {opts.min_delay:g}-{opts.max_delay:g} s"
    if server.kind == "error":
        what += f", {opts.error_rate:.0%} faults: {describe_faults(opts.faults)}"
    return f"{server.kind.upper():<6} {server.base_url}  {what}"


def _say(line: str) -> None:
    # The starter may be dead already (SIGKILL): nobody reads the pipe then.
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


def _detach() -> None:
    # Our starter stops reading our stdout and stderr; writing there later
    # would fail, so both go to the null device from now on. (The process is
    # in a session of its own from the start: flags2.servers.launch.)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _watch_stdin(left: threading.Event) -> None:
    # The parent holds the write end of our stdin; EOF means it closed it or died
    # (even by SIGKILL).
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    left.set()


def _serve_out(
    left: threading.Event, stop: threading.Event, lease: Path | None
) -> None:
    # Once the starter has left, a server must not outlive it, nor the other
    # runs holding its lease.
    left.wait()
    if lease is not None:
        held = Lease(lease)
        if not held.take_if_unused():
            _say(DETACHED_LINE)
            _detach()
            held.take_when_unused()
        _held.append(held)
    _say(STOPPING_LINE)
    stop.set()


def _leave_on_signals(left: threading.Event) -> None:
    """SIGTERM and SIGHUP to a leased server mean what its starter's exit means.

    The server is shared: a signal sent to it (``kill PID``, a logout's SIGHUP)
    lets it stop as soon as no run holds its lease, never under one. SIGKILL
    is still the way to stop it at once.
    """

    def leave(signum: int, frame: FrameType | None) -> None:
        left.set()

    for name in _LEAVING_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), leave)


def run(
    servers: Sequence[FlagServer],
    *,
    supervised: bool,
    banner: Sequence[str],
    lease: Path | None = None,
) -> None:
    """Announce `servers` (banner lines or, supervised, the READY line) and serve.

    Lifts the descriptor limit first; the banner (stderr, when supervised) says
    so when it still holds fewer than a thousand connections.
    """
    stop = threading.Event()
    note = limit_note(raise_descriptor_limit())

    def announce() -> None:
        if not supervised:
            # The note goes second: whoever reads up to the URLs has seen it.
            lines = [*banner[:1], *([note] if note else []), *banner[1:]]
            for line in lines:
                print(line, flush=True)
            return
        if note is not None:
            print(f"flags2 servers: {note}", file=sys.stderr, flush=True)
        ready = {
            "seed": servers[0].seed,
            "urls": {s.kind: s.base_url for s in servers},
            "ports": {s.kind: s.port for s in servers},
        }
        left = threading.Event()
        if lease is not None and threading.current_thread() is threading.main_thread():
            _leave_on_signals(left)  # before READY: a signal may follow it at once
        print(READY_PREFIX + json.dumps(ready), flush=True)
        threading.Thread(target=_watch_stdin, args=(left,), daemon=True).start()
        threading.Thread(
            target=_serve_out, args=(left, stop, lease), daemon=True
        ).start()

    if supervised and threading.current_thread() is threading.main_thread():
        # Ctrl-C in the terminal reaches the whole process group; the parent
        # handles it and stops us itself (SIGTERM or stdin EOF).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve_until_stopped(servers, stop=stop, on_ready=announce)


def main(
    argv: list[str] | None = None,
    *,
    prog: str | None = None,
    default_log: bool = False,
) -> int:
    """Run the servers named on the command line until stopped; return the exit code."""
    parser = build_parser(prog, default_log=default_log)
    name = parser.prog
    try:
        args = parser.parse_args(argv)
        kinds = (
            [k for k in SERVER_KINDS if k in args.kinds]
            if args.kinds
            else list(SERVER_KINDS)
        )
        kinds_ports = _assign_ports(kinds, args.port)
        options = options_from_args(args)
        if options.seed is None:
            options = replace(options, seed=new_seed())
        servers = open_servers(kinds_ports, options)
    except SystemExit as exc:  # --help and --version end here
        return exc.code if isinstance(exc.code, int) else 0
    except (_UsageError, ValueError, ServerStartError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    seed = options.seed
    banner = [f"seed {seed} (replay with --seed {seed}); Ctrl-C stops the servers"]
    banner += [describe(server) for server in servers]
    run(servers, supervised=args.supervised, banner=banner, lease=args.lease)
    # The servers are closed: the lease can go now, rather than be left for
    # the interpreter to find unclosed as it ends (a ResourceWarning).
    while _held:
        _held.pop().release()
    if not args.supervised:
        print("servers stopped", file=sys.stderr)
    return 0
