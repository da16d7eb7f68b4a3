"""Comparing rows: speed-up over sequential, ratio to each peer on the same codes."""

from __future__ import annotations

import pytest

from flags2.bench.session import compare, missing_peers
from tests.bench.helpers import make_cell, make_row, make_run


def test_speedup_is_over_sequential_on_the_same_codes() -> None:
    sequential = make_row(make_cell("sequential", max_req=1), make_run(4.0))
    asyncio = make_row(make_cell(), make_run(1.0))
    other_codes = make_row(make_cell(n=8), make_run(1.0))
    compare([sequential, asyncio, other_codes])
    assert sequential.speedup == 1.0 and asyncio.speedup == 4.0
    assert other_codes.speedup is None


def test_ratio_to_a_peer_prefers_its_row_at_the_same_m() -> None:
    rows = [
        make_row(make_cell(max_req=30), make_run(wall=1.0)),
        make_row(make_cell("curl", max_req=5), make_run(wall=4.0)),
        make_row(make_cell("curl", max_req=30), make_run(wall=2.0)),
        make_row(make_cell("aria2c", max_req=5), make_run(wall=0.5)),
    ]
    compare(rows)
    assert rows[0].vs_peer == {"curl": 0.5, "aria2c": 2.0}
    assert rows[1].vs_peer == {} and rows[3].speedup is None


def test_missing_peers_are_the_uninstalled_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "aria2c" else name
    )
    assert missing_peers(["asyncio", "curl", "aria2c", "aria2c"]) == [
        "aria2c",
        "aria2c",
    ]
