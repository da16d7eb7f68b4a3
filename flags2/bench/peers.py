"""Other downloaders as rows of the bench: curl and aria2c, run like flags2.

Each peer gets what a flags2 run gets: a fresh folder, the cell's codes in
the same order, the cell's concurrency (curl's ``--parallel-max``, aria2c's
``-j``), no retries, the CA that ``SSL_CERT_FILE`` names (as flags2 trusts
it), and for curl the cell's ``--http`` (``--http1.1`` or ``--http2``; aria2c
speaks HTTP/1.1 only). Neither reports per-request times, so its record is a
stand-in with counts and the wall time as its elapsed; curl's also has the
protocols it used and its connections (its ``num_connects``). For a curl cell,
``command(cell, base_url, dest, scratch)`` starts with
``['curl', '--parallel', '--parallel-max', ...]``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from flags2.bench.model import ARIA2C, CURL, Cell
from flags2.urls import flag_url, redact

__all__ = ["command", "missing", "peer_record"]

# aria2c's own error code for "Resource not found" (an HTTP 404).
_ARIA2C_NOT_FOUND = "3"
_ARIA2C_ERROR = re.compile(r"errorCode=(\d+) URI=(\S+)")
_ARIA2C_OK = re.compile(r"^\w+\|OK\s*\|", re.MULTILINE)
# One line per transfer: its status, its protocol, the connections it opened.
_CURL_WRITE_OUT = "%{http_code} %{http_version} %{num_connects}\\n"
_CURL_HTTP = {"1.1": "--http1.1", "2": "--http2"}


def _ca_file() -> str | None:
    """The CA file flags2's children trust through ``SSL_CERT_FILE``, if any."""
    return os.environ.get("SSL_CERT_FILE") or None


def missing(mode: str) -> bool:
    """True if the peer's program is not on PATH."""
    return shutil.which(mode) is None


def command(cell: Cell, base_url: str, dest: Path, scratch: Path) -> list[str]:
    """The peer's command line for `cell`; `scratch` may hold its input file."""
    if cell.mode == CURL:
        argv = [
            "curl", "--parallel", "--parallel-max", str(cell.concurrency), "-s",
            "-w", _CURL_WRITE_OUT,  # a line per transfer, to count like flags2
        ]  # fmt: skip
        if cell.http is not None:
            argv.append(_CURL_HTTP[cell.http])
        if (ca := _ca_file()) is not None:
            argv += ["--cacert", ca]
        for cc in cell.codes.codes:
            argv += ["-o", str(dest / f"{cc}.gif"), flag_url(base_url, cc)]
        return argv
    if cell.mode == ARIA2C:
        listing = scratch / "aria2c-input.txt"
        listing.write_text(
            "".join(
                f"{flag_url(base_url, cc)}\n  out={cc}.gif\n" for cc in cell.codes.codes
            ),
            encoding="utf-8",
        )
        ca = _ca_file()
        return [
            "aria2c", "-i", str(listing), "-d", str(dest),
            *([f"--ca-certificate={ca}"] if ca is not None else []),
            "-j", str(cell.concurrency), "--max-tries=1",  # as flags2 --retries 0
            "--allow-overwrite=true", "--auto-file-renaming=false",
            "--file-allocation=none", "--summary-interval=0",
            "--show-console-readout=false", "--console-log-level=error",
            "--download-result=full",  # one OK/ERR line per file, to count
        ]  # fmt: skip
    raise ValueError(f"not a peer: {cell.mode!r}")


def _statuses(cell: Cell, stdout: str) -> tuple[int, int]:
    """(OK, not found) as the peer's own output tells."""
    if cell.mode == CURL:
        codes = [line.split()[0] for line in stdout.splitlines() if line.split()]
        return codes.count("200"), codes.count("404")
    failed = dict((uri, code) for code, uri in _ARIA2C_ERROR.findall(stdout))
    not_found = sum(code == _ARIA2C_NOT_FOUND for code in failed.values())
    return len(_ARIA2C_OK.findall(stdout)), not_found


def peer_record(cell: Cell, base_url: str, wall: float, stdout: str) -> dict[str, Any]:
    """A stand-in for a ``download --json`` record, from the peer's output."""
    ok, not_found = _statuses(cell, stdout)
    # Anything neither OK nor 404 is an error, transfers never done included.
    errors = max(0, len(cell.codes.codes) - ok - not_found)
    counts = {
        "OK": ok,
        "NOT_FOUND": not_found,
        "ERROR": errors,
        "CANCELLED": 0,
        "SKIPPED": 0,
    }
    record: dict[str, Any] = {
        "mode": cell.mode, "server": "CUSTOM", "base_url": redact(base_url),
        "concurrency": cell.concurrency, "elapsed": round(wall, 6),
        "counts": counts, "flags": [],
    }  # fmt: skip
    if cell.mode == CURL:
        record.update(_curl_protocols(stdout))
    elif ok or not_found:  # aria2c has no HTTP/2: what answered was HTTP/1.1
        record["http_versions"] = ["HTTP/1.1"]
    return record


def _curl_protocols(stdout: str) -> dict[str, Any]:
    """The protocols curl's answers came over, and the connections it opened."""
    versions: set[str] = set()
    connections = 0
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[0] == "000":  # no answer: no protocol
            continue
        versions.add(f"HTTP/{fields[1]}")
        connections += int(fields[2]) if fields[2].isdigit() else 0
    return {"http_versions": sorted(versions), "connections": connections or None}
