"""Drop-in for the book's ``slow_server.py``: one slow, optionally failing server.

Same command line as the script in *Fluent Python* 2e, chapter 20, so the book's
instructions still work, but it serves the bundled flags from any folder, binds
127.0.0.1 unless told otherwise, and its delays and faults follow the same seeded
plan as ``python -m servers`` (``flags2 serve``) for the same seed::

    $ python -m servers.slow                     # DELAY on port 8001, from a checkout
    $ python -m flags2.servers.slow              # the same, installed
    $ python -m servers.slow 8002 --error-rate .25 --seed 7   # ERROR on 8002
    seed 7 (replay with --seed 7)
    Serving HTTP on 127.0.0.1 port 8002 (http://127.0.0.1:8002/) ...
    BR delay: 2.31s 200
    CN delay: 0.87s 418 teapot
    ^C
    Keyboard interrupt received, exiting.

With an error rate above 0 it is the ERROR server, else the DELAY server (they
share delays for a seed, so the plan is the same either way). It logs each
request by default, as the book's script does; ``-q`` silences it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .cli import add_log_arguments, add_option_arguments, options_from_args, run
from .plan import new_seed
from .server import ServerStartError, open_servers

__all__ = ["build_parser", "main"]


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Return the book-compatible argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Slow HTTP server for the flags2 clients: delays every GET "
        "and, with --error-rate, answers some with faults (418 by default).",
    )
    parser.add_argument(
        "port",
        nargs="?",
        default=8001,
        type=_port,
        help="port to listen on (default: %(default)s; 0 = any free port)",
    )
    # The book's script defaults to no errors; ERROR is `8002 --error-rate .25`.
    add_option_arguments(parser, error_rate=0.0)
    add_log_arguments(parser, default_log=True)
    return parser


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    name = parser.prog
    try:
        options = options_from_args(args)
        if options.seed is None:
            options = replace(options, seed=new_seed())
        kind = "error" if options.error_rate > 0 else "delay"
        (server,) = open_servers([(kind, args.port)], options)
    except (ValueError, ServerStartError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    host = str(server.server_address[0])
    banner = [
        f"seed {server.seed} (replay with --seed {server.seed})",
        f"Serving HTTP on {host} port {server.port} ({server.root_url}/) ...",
    ]
    run([server], supervised=args.supervised, banner=banner, lease=args.lease)
    if not args.supervised:
        print("\nKeyboard interrupt received, exiting.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog=f"python -m {__package__}.slow"))
