"""A country's name out of a ``metadata.json`` body, which the server controls.

With ``--names`` the body decides a file name, so it is read as hostile: it
must be small (a real one is under 100 bytes), UTF-8 without a byte order mark
(RFC 8259), and strict JSON: no ``NaN`` or ``Infinity``, no number too long to
be a number, no nesting deeper than `MAX_DEPTH`, no key given twice (two
parsers could read two different names). Every failure is a :class:`BadMetadata`
with one line saying why, so it is that flag's error and the run goes on::

    >>> country_name(b'{"iso_cc": "BR", "country": "Brazil"}')
    'Brazil'
    >>> country_name(b'{"country": "Brazil", "country": "../x"}')
    Traceback (most recent call last):
    ...
    flags2.metadata.BadMetadata: metadata.json gives the key 'country' twice
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from flags2.save import FlagProblem

__all__ = [
    "MAX_DEPTH",
    "MAX_METADATA_BYTES",
    "MAX_NUMBER_DIGITS",
    "BadMetadata",
    "country_name",
]

MAX_METADATA_BYTES = 16 * 1024
"""Larger is not a metadata.json: refused before it is parsed."""
MAX_NUMBER_DIGITS = 100
"""A longer number is refused; Python's own limit (4300 digits) would be a
ValueError deep in the parser, and no metadata needs more than a few."""


MAX_DEPTH = 32
"""Deeper nesting is refused before parsing, alike on every Python: json's own
bound is the interpreter's recursion limit, which differs between versions."""


class BadMetadata(FlagProblem):
    """A ``metadata.json`` that gives no usable country name."""


def country_name(
    body: bytes, *, received: int | None = None, content_length: str | None = None
) -> str:
    """The ``"country"`` of a ``metadata.json`` body, or BadMetadata.

    `received` counts the bytes on the wire, which is what `content_length`
    (the header, if any) announces.
    """
    if (
        received is not None
        and content_length is not None
        and content_length.isascii()
        and content_length.isdigit()
        and received != int(content_length)
    ):
        raise BadMetadata(
            f"metadata.json incomplete: {received} of"
            f" {content_length} bytes (Content-Length)"
        )
    if len(body) > MAX_METADATA_BYTES:
        raise BadMetadata(
            f"metadata.json too large: {len(body)} bytes (at most {MAX_METADATA_BYTES})"
        )
    data = _parse(body)
    country = data.get("country") if isinstance(data, dict) else None
    if not isinstance(country, str):
        raise BadMetadata('metadata.json has no "country" name')
    return country


def _parse(body: bytes) -> Any:
    if body.startswith(b"\xef\xbb\xbf"):  # UTF-16's marks are not UTF-8 at all
        raise BadMetadata("metadata.json is not JSON: it starts with a byte order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # UTF-16 or 32 without a mark, Latin-1, binary
        raise BadMetadata("metadata.json is not JSON: it is not UTF-8") from None
    if _too_deep(text):
        raise BadMetadata("metadata.json is not JSON: nested too deeply")
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_integer,
            parse_float=_real,
            parse_constant=_constant,
        )
    except BadMetadata:
        raise
    except RecursionError:  # [[[[...: the parser recurses once per level
        raise BadMetadata("metadata.json is not JSON: nested too deeply") from None
    except ValueError:
        raise BadMetadata("metadata.json is not JSON") from None


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH (strings skipped).

    Only the brackets are counted: what they hold is for the parser to judge.
    """
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadMetadata(f"metadata.json gives the key {_shown(key)} twice")
            seen.add(key)
    return data


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        _too_long(digits)
    return int(digits)


def _real(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        _too_long(text)
    number = float(text)  # JSON's syntax, already checked: float() accepts it
    if not math.isfinite(number):  # 1e999
        raise BadMetadata(f"metadata.json has a number out of range: {text}")
    return number


def _too_long(text: str) -> NoReturn:
    raise BadMetadata(
        f"metadata.json has a number of {len(text)} characters"
        f" (at most {MAX_NUMBER_DIGITS})"
    )


def _constant(name: str) -> NoReturn:
    raise BadMetadata(f"metadata.json is not JSON: {name} is not a JSON value")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else f"{text[:40]}...")
