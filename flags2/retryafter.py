"""The wait a ``Retry-After`` header asks for, read so that no value can hurt.

RFC 9110 allows two forms: delay-seconds (ASCII digits only) and an HTTP-date.
Anything else is not a usable value, and the caller falls back to its own
backoff rather than fail the retry: a server's odd header must never cost a
flag its retries. The answer is always a finite number of seconds between 0
and the caller's cap::

    >>> retry_after("120", cap=10.0)
    10.0
    >>> retry_after("3", cap=10.0)
    3.0
    >>> retry_after("²", cap=10.0) is None  # "²".isdigit() is True; no delay
    True
    >>> retry_after("Sun, 06 Nov 1994 08:49:37 GMT", cap=10.0)  # in the past
    0.0
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["MAX_RETRY_AFTER_CHARS", "retry_after"]

# An HTTP-date is 29 characters, the obsolete forms a few more: a longer value
# (digits aside) is no date, and is never handed to the date parser.
MAX_RETRY_AFTER_CHARS = 64


def retry_after(
    value: str | None, *, cap: float, now: float | None = None
) -> float | None:
    """Seconds to wait, at most `cap`, or None when `value` is not usable.

    Not usable: missing or empty, digits that are not ASCII (``²``, ``١٢``,
    fullwidth ones), a sign or a fraction (``-1``, ``1.5``, ``1e309``,
    ``inf``), several values (a repeated header arrives joined by commas), a
    date that does not parse or cannot exist. A date in the past means at
    once (0). `now` is the current time (``time.time()`` when not given), for
    tests.

        >>> [retry_after(v, cap=10.0) for v in ["", "-1", "1e309", "1, 2", "x"]]
        [None, None, None, None, None]
        >>> retry_after("99999999999999999999", cap=10.0)  # huge, but a delay
        10.0
        >>> retry_after("Sun, 06 Nov 1994 08:49:39 GMT", cap=10.0, now=784111777)
        2.0
    """
    if not value:
        return None
    value = value.strip(" \t")
    if value.isascii() and value.isdigit():
        return min(float(value), cap)  # never raises: inf for 400 digits
    if len(value) > MAX_RETRY_AFTER_CHARS:
        return None
    seconds = _until(value, time.time() if now is None else now)
    if seconds is None:
        return None
    return min(max(seconds, 0.0), cap)


def _until(value: str, now: float) -> float | None:
    """Seconds from `now` to the HTTP-date `value`, or None if it is not one."""
    # Each form has at most one comma (after the day's name): more is a list.
    if value.count(",") > 1 or not value.isascii():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):  # a day 99999999999 overflows
        return None
    if when.tzinfo is None:  # "-0000": the time is UTC, its zone unknown
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    return seconds if math.isfinite(seconds) else None
