"""Every Retry-After value is a wait between 0 and the cap, or None (unusable)."""

from __future__ import annotations

import pytest

from flags2.retryafter import retry_after

NOW = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date
CAP = 10.0

USABLE = {
    "0": 0.0,
    "3": 3.0,
    " 3\t": 3.0,
    "010": CAP,
    "11": CAP,
    "99999999999999999999": CAP,
    "9" * 5000: CAP,  # digits past float's range, and past int()'s digit limit
    "Sun, 06 Nov 1994 08:49:39 GMT": 2.0,
    "Sunday, 06-Nov-94 08:49:39 GMT": 2.0,  # RFC 850, obsolete but allowed
    "Sun Nov  6 08:49:39 1994": 2.0,  # asctime, obsolete but allowed
    "Sun, 06 Nov 1994 08:49:39 -0000": 2.0,  # a naive time, read as UTC
    "Sun, 06 Nov 1994 08:50:37 GMT": CAP,
    "Sun, 06 Nov 2094 08:49:37 GMT": CAP,
    "Sun, 06 Nov 1994 08:49:36 GMT": 0.0,  # in the past: at once
    "Thu, 01 Jan 1970 00:00:00 GMT": 0.0,
}

UNUSABLE = [
    None,
    "",
    " ",
    "\t",
    "\xb2",  # "²".isdigit() is True, and float() refuses it
    "\u0661\u0662",  # Arabic-Indic 12: isdigit(), and float() reads it as 12
    "\uff13",  # fullwidth 3
    "\U0001d7d1",  # mathematical bold 3
    "-1",
    "+1",
    "-0",
    "1.5",
    "1e309",
    "1e3",
    "0x10",
    "inf",
    "-inf",
    "nan",
    "Infinity",
    "1, 2",
    "1,2",
    "1 2",
    "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 32 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 25:49:37 GMT",
    "Sun, 06 Foo 1994 08:49:37 GMT",
    "Sun, 06 Nov 99999 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 +9999",
    "06 Nov 99999999999999999999 00:00",  # OverflowError in the date parser
    "Nov 99999999999999999999 08:49:37 1994",
    "Sun, 06 Nov 1994 08:49:37 GMT" + " x" * 20,  # parses, but no date is so long
    "Sun, 06 Nov 1994 08:49:37 G\xb2T",
    "soon",
    "\x00",
    "x" * 10_000,
]


@pytest.mark.parametrize(("value", "seconds"), USABLE.items(), ids=list(USABLE))
def test_a_usable_retry_after_is_a_capped_wait(value: str, seconds: float) -> None:
    assert retry_after(value, cap=CAP, now=NOW) == seconds


@pytest.mark.parametrize("value", UNUSABLE, ids=repr)
def test_an_unusable_retry_after_is_none(value: str | None) -> None:
    assert retry_after(value, cap=CAP, now=NOW) is None


def test_the_cap_bounds_every_wait() -> None:
    assert retry_after("5", cap=0.5) == 0.5
    assert retry_after("0", cap=0.5) == 0.0
