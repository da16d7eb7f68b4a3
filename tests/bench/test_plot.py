"""The timeline picture: every lane drawn, and a clear hint without matplotlib."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from flags2.bench.plot import INSTALL_HINT, Panel, PlotUnavailable, check_available
from tests.helpers import colour_pixels


def flag(cc: str, status: str, started: float, finished: float) -> dict[str, Any]:
    return {"cc": cc, "status": status, "started": started, "finished": finished}


SEQUENTIAL = Panel(
    "sequential DELAY -m 1 POP3",
    [flag("BR", "OK", 0.0, 0.3), flag("CN", "OK", 0.3, 0.5),
     flag("ZZ", "NOT_FOUND", 0.5, 0.9)],
    ideal=0.85,
)  # fmt: skip
CONCURRENT = Panel(
    "asyncio DELAY -m 1000 -e",
    [flag(f"A{c}", "ERROR" if c == "Q" else "OK", 0.01, 0.1 + i / 100)
     for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")],
    ideal=0.3,
)  # fmt: skip


# A legend swatch is about 400 pixels at this size; a lane is thousands.
SWATCH = 400


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_timeline_draws_every_lane(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from flags2.bench.plot import _COLOURS, draw_timeline

    path = tmp_path / f"timeline{suffix}"
    draw_timeline([SEQUENTIAL, CONCURRENT], path)
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
        # Each outcome covers far more than its legend swatch: its lanes are drawn.
        assert colour_pixels(path, _COLOURS["OK"]) > 50 * SWATCH  # 27 lanes
        assert colour_pixels(path, _COLOURS["NOT_FOUND"]) > 20 * SWATCH  # ZZ, long
        assert colour_pixels(path, _COLOURS["ERROR"]) > 4 * SWATCH  # AQ alone
    else:
        assert b"<svg" in data[:1000]
        ok_lanes = 2 + 25
        assert data.count(_COLOURS["OK"].encode()) >= ok_lanes  # one shape each


def test_nothing_to_draw_is_an_error(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from flags2.bench.plot import draw_timeline

    with pytest.raises(ValueError, match="nothing to draw"):
        draw_timeline([], tmp_path / "t.png")


def test_missing_matplotlib_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PlotUnavailable, match=INSTALL_HINT.replace("[", r"\[")):
        check_available()


def test_a_cpu_bound_panel_is_shaded(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from flags2.bench.plot import draw_timeline

    plain, shaded = tmp_path / "plain.svg", tmp_path / "shaded.svg"
    draw_timeline([CONCURRENT], plain)
    bound = Panel(CONCURRENT.title, CONCURRENT.flags, CONCURRENT.ideal, cpu_bound=True)
    draw_timeline([bound], shaded)
    assert b"#fff3e0" in shaded.read_bytes() and b"#fff3e0" not in plain.read_bytes()
    assert b"CPU-bound" in shaded.read_bytes()  # and the legend says what it means
