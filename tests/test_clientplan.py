from __future__ import annotations

import pytest

from flags2.clientplan import CONNECTIONS_PER_CLIENT, lean_transport_fits, split_slots


@pytest.mark.parametrize("concurrency", [1, 5, 31, 32, 33, 100, 999, 1000])
def test_slots_add_up_and_no_client_is_too_big(concurrency: int) -> None:
    sizes = split_slots(concurrency)
    assert sum(sizes) == concurrency
    assert max(sizes) <= CONNECTIONS_PER_CLIENT
    assert max(sizes) - min(sizes) <= 1  # as even as possible


def test_the_lean_transport_fits_plain_http_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert lean_transport_fits("http://127.0.0.1:8000/flags")
    assert not lean_transport_fits("https://www.fluentpython.com/data/flags")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not lean_transport_fits("http://127.0.0.1:8000/flags")
