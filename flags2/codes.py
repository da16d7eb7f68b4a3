"""Country codes: the book's defaults and the expansion of the ``CC`` arguments.

>>> expand_cc_args(every_cc=False, all_cc=False, cc_args=["b", "CN"], limit=3)
['BA', 'BB', 'BC']
>>> len(expand_cc_args(every_cc=True, all_cc=False, cc_args=[], limit=None))
676
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from functools import cache
from importlib import resources

__all__ = ["POP20_CC", "all_country_codes", "expand_cc_args"]

POP20_CC = "CN IN US ID BR PK NG BD RU JP MX PH VN ET EG DE IR TR CD FR".split()

_A_Z = string.ascii_uppercase


@cache
def all_country_codes() -> tuple[str, ...]:
    """The 194 codes of ``-a/--all``, shipped with the package."""
    text = resources.files("flags2").joinpath("country_codes.txt").read_text("ascii")
    return tuple(sorted(text.split()))


def expand_cc_args(
    every_cc: bool, all_cc: bool, cc_args: Iterable[str], limit: int | None
) -> list[str]:
    """Sorted, de-duplicated codes, at most `limit` of them.

    Raises ValueError naming the first argument that is neither a letter (A
    stands for AA..AZ) nor a two-letter code.
    """
    codes: set[str] = set()
    if every_cc:
        codes.update(a + b for a in _A_Z for b in _A_Z)
    elif all_cc:
        codes.update(all_country_codes())
    else:
        for arg in cc_args:
            # Check before upper(): "ß".upper() is "SS", a valid-looking code.
            cc = arg.upper() if arg.isascii() else ""
            if len(cc) == 1 and cc in _A_Z:
                codes.update(cc + c for c in _A_Z)
            elif len(cc) == 2 and all(c in _A_Z for c in cc):
                codes.add(cc)
            else:
                raise ValueError(
                    f"invalid country code {arg!r}: each CC must be A to Z or AA to ZZ"
                )
    return sorted(codes)[:limit]
