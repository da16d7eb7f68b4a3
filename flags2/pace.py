"""Polite pacing: ``--rate N/s`` (or ``N/m``, ``N/h``, as curl's ``--rate``).

At most N request starts per period over the whole run, evenly spaced: with
``--rate 20/s`` a request starts every 50 ms, whatever ``-m`` allows in flight.
Every request counts, a ``metadata.json`` or a retry as much as a flag.

The limiter is pyrate-limiter's GCRA (a leaky bucket kept as one timestamp)
with a burst of 1, which spaces requests evenly instead of letting N through at
once; one limiter serves both the threads (``try_acquire`` sleeps in the
calling thread, so Ctrl-C still interrupts the sequential mode) and asyncio
(``try_acquire_async`` waits with ``asyncio.sleep``, so a cancelled task stops
waiting). Its import costs about as much as 50 flags on loopback, so it is
imported only by runs that ask for a rate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pyrate_limiter import Limiter

__all__ = ["PERIODS", "Pace", "RateLimit", "parse_rate"]

# Seconds in each period curl's --rate accepts (s, m, h; d too).
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
# The unit is required: curl reads a bare N as N per hour, which surprises.
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")


class RateLimit(NamedTuple):
    """At most `requests` request starts every `period` seconds."""

    requests: int
    period: int

    def __str__(self) -> str:
        unit = next(u for u, secs in PERIODS.items() if secs == self.period)
        return f"{self.requests}/{unit}"

    def describe(self) -> str:
        """In words, for the report: ``20 requests per second``."""
        plural = "s" if self.requests != 1 else ""
        return f"{self.requests} request{plural} per {_PERIOD_NAMES[self.period]}"


def parse_rate(text: str) -> RateLimit:
    """``"20/s"`` as a RateLimit; ValueError saying why for anything else.

    >>> parse_rate("20/s"), parse_rate("90/M")
    (RateLimit(requests=20, period=1), RateLimit(requests=90, period=60))
    """
    match = _RATE.fullmatch(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not N/s, N/m or N/h (a whole number N)")
    count, unit = int(match[1]), match[2]
    if unit not in PERIODS:
        raise ValueError(f"{text!r}: the period must be s, m, h or d, not {unit!r}")
    if count == 0:
        raise ValueError(f"{text!r}: at least 1 request per period")
    return RateLimit(count, PERIODS[unit])


class Pace:
    """The run's limiter: call :meth:`wait` (or await :meth:`wait_async`)
    before every request."""

    def __init__(self, rate: RateLimit) -> None:
        from pyrate_limiter import (
            Limiter,
            Rate,
            SingleBucketFactory,
            StateBucket,
        )

        self.rate = rate
        bucket = StateBucket([Rate(rate.requests, rate.period * 1000, burst=1)])
        # A GCRA bucket has nothing to leak: no background thread is needed.
        # buffer_ms=0: the default adds 50 ms to every wait, which would halve
        # a 20/s rate.
        self._limiter: Limiter = Limiter(
            SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=0
        )

    def wait(self) -> None:
        """Block this thread until the next request may start."""
        self._limiter.try_acquire("flags2")

    async def wait_async(self) -> None:
        """Wait, without blocking the event loop, until a request may start."""
        await self._limiter.try_acquire_async("flags2")
