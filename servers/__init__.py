"""Bundled test servers for flags2: LOCAL, DELAY and ERROR.

Three `http.server`-based servers that serve the 194 bundled flags at
``/flags/xx/xx.gif``: LOCAL answers at once, DELAY waits a seeded random delay,
ERROR adds injected faults. Start them with ``flags2 serve`` or
``python -m flags2.servers`` (``python -m servers`` from a checkout: this folder
is installed as the package ``flags2.servers``); embed them with
`flags2.servers.launch.background`::

    $ python -m servers delay --seed 7 --max-delay 2
    seed 7 (replay with --seed 7); Ctrl-C stops the servers
    DELAY  http://127.0.0.1:8001/flags  delay 0.5-2 s

Modules: `options` (settings), `plan` (the seeded plan), `stats` (``/_stats``),
`handler` (request handling and faults), `connection` (the hardened HTTP/1.1
connection under it), `head` (bounds on a request's head and body), `limits`
(descriptors, connections, head deadline),
`server` (binding and lifetime), `cli` (command line), `launch` (child process),
`lease` (a bundled server shared by runs), `slow` (the book's script), `tls`
(DELAY over TLS and HTTP/2 on hypercorn, for the bench: ``flags2[tls]``).
"""

from .options import FAULT_KINDS, SERVER_KINDS, ServerOptions, parse_faults
from .plan import Planned, planned

__all__ = [
    "FAULT_KINDS",
    "SERVER_KINDS",
    "Planned",
    "ServerOptions",
    "parse_faults",
    "planned",
]
