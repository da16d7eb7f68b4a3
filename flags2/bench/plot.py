"""The timeline picture of ``flags2 bench --plot``: one lane per request.

Each panel is one run (the median run of a bench row): one lane per code in
submission order, top to bottom, and a bar from the request's start to its
finish, coloured by outcome, and a black tick where the program took its
result (``consumed``): right at the bar's end when results are taken as they
complete, later with ``--map``, whose results wait for every earlier code's;
a dashed line marks the ideal time, and a shaded background a run that was
CPU-bound. Every panel
shares one time axis, so the staircase of the sequential run and the overlap of
the concurrent ones are seen at a glance::

    $ flags2 bench --plot timeline.png
    ...
    timeline: timeline.png

matplotlib is an optional extra (``pip install 'flags2[plot]'``); only this
module imports it, and only when a picture is drawn.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "SUFFIXES", "Panel", "PlotUnavailable", "check_available",
           "draw_timeline"]  # fmt: skip

INSTALL_HINT = "pip install 'flags2[plot]'"
SUFFIXES = (".png", ".svg")

_COLOURS = {
    "OK": "#2e7d32",
    "NOT_FOUND": "#9e9e9e",
    "ERROR": "#c62828",
    "CANCELLED": "#ef6c00",
    "SKIPPED": "#90caf9",  # --skip-existing: found saved, never requested
}
_CONSUMED = "consumed"  # in `seen` once a panel drew its result ticks
_CPU_BOUND = "#fff3e0"  # a panel's background when its run was CPU-bound
_LABELS = {"OK": "OK", "NOT_FOUND": "not found", "ERROR": "error",
           "CANCELLED": "cancelled", "SKIPPED": "skipped"}  # fmt: skip


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


@dataclass(frozen=True, slots=True)
class Panel:
    """One run to draw: its title, its flag records, and its ideal time."""

    title: str
    flags: Sequence[dict[str, Any]]
    """The ``flags`` of a ``download --json`` record (cc, status, started...)."""
    ideal: float | None = None
    cpu_bound: bool = False
    """Shade the panel: client and server kept the machine's cores busy."""


def check_available() -> None:
    """Raise `PlotUnavailable` if matplotlib cannot be imported."""
    # find_spec, not import: checking must not cost matplotlib's import time
    # (about half a second) before a bench that may then run for a minute.
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable(f"--plot needs matplotlib: {INSTALL_HINT}")


def draw_timeline(panels: Sequence[Panel], path: Path) -> None:
    """Draw `panels` stacked on one time axis and save them to `path`."""
    check_available()
    if not panels:
        raise ValueError("nothing to draw: no run has per-request timings")
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no state

    # Lanes get more room as they multiply, but a 676-lane panel may not crowd
    # out a 20-lane one: heights grow with the square root of the lane count,
    # up to three times a small panel's.
    heights = [min(3.0, max(1.0, len(p.flags) ** 0.5 / 6)) for p in panels]
    fig = Figure(figsize=(10, 1.2 + 1.5 * sum(heights)), layout="constrained")
    axes = fig.subplots(
        len(panels), 1, sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )[:, 0]  # fmt: skip
    end = max(
        [float(f.get("consumed", f["finished"])) for p in panels for f in p.flags]
        + [p.ideal or 0.0 for p in panels]
        + [0.001]
    )
    seen: set[str] = set()
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, seen)
    axes[-1].set_xlim(0, end * 1.02)
    axes[-1].set_xlabel("seconds since the run began")
    handles = [_patch(status) for status in _COLOURS if status in seen]
    if _CONSUMED in seen:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", marker="|", linestyle="",
                              label="result taken"))  # fmt: skip
    if any(p.ideal for p in panels):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", linestyle="--", label="ideal"))
    if any(p.cpu_bound for p in panels):
        from matplotlib.patches import Patch

        handles.append(Patch(color=_CPU_BOUND, label="CPU-bound"))
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles),
               frameon=False)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _patch(status: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=_COLOURS[status], label=_LABELS[status])


def _draw_panel(ax: Any, panel: Panel, seen: set[str]) -> None:
    flags = list(panel.flags)
    for status, colour in _COLOURS.items():
        lanes = [(i, f) for i, f in enumerate(flags) if f["status"] == status]
        if not lanes:
            continue
        seen.add(status)
        starts = [float(f["started"]) for _, f in lanes]
        # A bar of zero width vanishes; a cancelled or instant flag stays visible.
        widths = [max(float(f["finished"]) - float(f["started"]), 1e-3)
                  for _, f in lanes]  # fmt: skip
        ax.barh([i for i, _ in lanes], widths, left=starts, height=1.0,
                color=colour, linewidth=0)  # fmt: skip
    consumed = [
        (i, float(f["consumed"])) for i, f in enumerate(flags) if "consumed" in f
    ]
    if consumed:  # records older than the field have none
        ax.scatter([t for _, t in consumed], [i for i, _ in consumed], marker="|",
                   color="black", s=12, linewidths=0.8)  # fmt: skip
        seen.add(_CONSUMED)
    if panel.cpu_bound:
        ax.set_facecolor(_CPU_BOUND)
    if panel.ideal:
        ax.axvline(panel.ideal, color="black", linestyle="--", linewidth=1)
    ax.set_ylim(len(flags) - 0.5, -0.5)  # first submitted on top
    if len(flags) <= 20:
        ax.set_yticks(range(len(flags)), [str(f["cc"]) for f in flags], fontsize=6)
    else:
        ax.set_ylabel(f"{len(flags)} requests", fontsize=8)
        ax.set_yticks([])
    ax.set_title(panel.title, fontsize=9, loc="left")
