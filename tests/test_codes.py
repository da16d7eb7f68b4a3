from __future__ import annotations

import pytest

from flags2.codes import POP20_CC, all_country_codes, expand_cc_args


def test_letters_expand_to_26_codes_each() -> None:
    codes = expand_cc_args(False, False, ["a", "b", "c"], None)
    assert (len(codes), codes[0], codes[-1]) == (78, "AA", "CZ")


def test_all_with_limit_is_the_books_example() -> None:
    codes = expand_cc_args(False, True, [], 100)
    assert (len(codes), codes[0], codes[-1]) == (100, "AD", "LK")


def test_every_is_all_676_pairs() -> None:
    codes = expand_cc_args(True, False, [], None)
    assert len(codes) == 676 == len(set(codes))
    assert codes == sorted(codes)


def test_all_is_the_194_shipped_codes() -> None:
    codes = all_country_codes()
    assert len(codes) == 194
    assert (codes[0], codes[-1]) == ("AD", "ZW")
    assert set(POP20_CC) <= set(codes)


def test_codes_are_upper_cased_and_deduplicated() -> None:
    assert expand_cc_args(False, False, ["br", "BR", "cn"], None) == ["BR", "CN"]


@pytest.mark.parametrize("bad", ["1", "ABC", "a1", "é", "", "ß"])
def test_bad_codes_are_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid country code"):
        expand_cc_args(False, False, ["BR", bad], None)
