"""The bench's defaults, apart so the command line can show them cheaply.

:mod:`flags2.cli` imports the bench command on every start, ``download``
included; this module imports nothing, so neither does that.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_DELAY", "DEFAULT_MIN_DELAY", "DEFAULT_REPEAT"]

DEFAULT_REPEAT = 3
# Short delays keep the demo under a minute on 2 cores (20 sequential requests
# average 0.25 s each) while still dwarfing a request's cost on loopback.
DEFAULT_MIN_DELAY = 0.1
DEFAULT_MAX_DELAY = 0.4
