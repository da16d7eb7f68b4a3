"""The asyncio transport's read timer: one per connection, right for every exchange.

An exchange on a reused connection keeps the timer the previous exchange
armed (it fires early and moves on to the new deadline), so neither a timer
left from before nor a missing one may change what a timeout means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx2 as httpx
import pytest

from flags2.aioclients import AsyncPlainHTTPTransport
from tests.helpers import Answers, KeptAlive, flag_bytes

GIF = flag_bytes("BR")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(GIF), GIF)


async def _gets(
    url: str, timeouts: list[float | None], pauses: list[float]
) -> list[object]:
    """GET `url` once per timeout, pausing before each; an answer or the error."""
    outcomes: list[object] = []
    async with httpx.AsyncClient(transport=AsyncPlainHTTPTransport()) as client:
        for timeout, pause in zip(timeouts, pauses, strict=True):
            await asyncio.sleep(pause)
            try:
                outcomes.append((await client.get(url, timeout=timeout)).content)
            except httpx.ReadTimeout as exc:
                outcomes.append(exc)
    return outcomes


def test_a_timer_left_from_the_last_exchange_does_not_end_the_next(
    kept_alive: Callable[[Answers], KeptAlive],
) -> None:
    # The first exchange's timer fires during the second one, whose answer
    # comes well within its own timeout: it must move on, not time out.
    server = kept_alive([[(0, OK)], [(0.6, OK)]])
    outcomes = asyncio.run(_gets(f"{server.url}/br/br.gif", [1.0, 1.0], [0, 0.7]))
    assert outcomes == [GIF, GIF]
    assert len({number for number, _ in server.requests}) == 1  # one connection


def test_a_reused_connection_still_times_out(
    kept_alive: Callable[[Answers], KeptAlive],
) -> None:
    server = kept_alive([[(0, OK)], [(30, OK)]])
    outcomes = asyncio.run(_gets(f"{server.url}/br/br.gif", [0.5, 0.5], [0, 0]))
    assert outcomes[0] == GIF
    assert isinstance(outcomes[1], httpx.ReadTimeout)
    assert len({number for number, _ in server.requests}) == 1


@pytest.mark.parametrize("first", [30.0, None], ids=["longer-before", "none-before"])
def test_a_shorter_timeout_after_a_longer_one_is_kept(
    kept_alive: Callable[[Answers], KeptAlive], first: float | None
) -> None:
    # A timer armed for a 30 s timeout, or none armed at all (no timeout
    # before), would leave the 0.5 s one without its deadline.
    server = kept_alive([[(0, OK)], [(30, OK)]])
    timeouts = [first, 0.5]
    outcomes = asyncio.run(_gets(f"{server.url}/br/br.gif", timeouts, [0, 0]))
    assert outcomes[0] == GIF
    assert isinstance(outcomes[1], httpx.ReadTimeout)
