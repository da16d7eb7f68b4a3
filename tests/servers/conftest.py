"""Fixtures for the server tests: in-process servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from flags2.servers.server import FlagServer
from flags2.servers.testing import ServerFactory, running

__all__ = ["start_server"]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Return a function that starts a server on port 0, serving in a thread.

    It takes the kind and `ServerOptions` fields (defaults: seed 1, delays of at
    most 20 ms); every server started is shut down at teardown.
    """
    with ExitStack() as stack:

        def start(kind: str = "local", **overrides: Any) -> FlagServer:
            return stack.enter_context(running(kind, **overrides))

        yield start
