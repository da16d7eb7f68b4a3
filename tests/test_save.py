from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flags2.save import BadFlag, Saver, check_flag
from tests.conftest import flag_bytes, leftovers


def test_check_accepts_a_complete_gif() -> None:
    body = flag_bytes("BR")
    check_flag(
        body,
        received=len(body),
        content_length=str(len(body)),
        content_type="image/gif",
    )


def test_check_refuses_a_short_body() -> None:
    body = flag_bytes("BR")
    with pytest.raises(BadFlag, match="incomplete body"):
        check_flag(
            body, received=10, content_length=str(len(body)), content_type="image/gif"
        )


def test_check_refuses_what_is_not_a_gif() -> None:
    with pytest.raises(BadFlag, match="not a GIF: 6 bytes of text/html"):
        check_flag(
            b"<html>", received=6, content_length="6", content_type="text/html; x=y"
        )


def test_save_writes_the_file_with_ordinary_permissions(dest: Path) -> None:
    saver = Saver(dest)
    assert saver.save(b"GIF89a...", "BR.gif")
    assert (dest / "BR.gif").read_bytes() == b"GIF89a..."
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((dest / "BR.gif").stat().st_mode) == 0o666 & ~umask
    assert leftovers(dest) == []


def test_save_replaces_an_old_file_whole(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readers must see the old file or the new one, never a mix: so the name
    # changes hands in one os.replace, from a temporary already complete.
    final = dest / "BR.gif"
    final.write_bytes(b"old")
    old_inode = final.stat().st_ino
    moves: list[tuple[bytes, bytes]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        assert Path(dst) == final and Path(src).parent == dest
        moves.append((final.read_bytes(), Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert Saver(dest).save(b"GIF89a new", "BR.gif")
    assert moves == [(b"old", b"GIF89a new")]  # untouched until the one move
    assert final.read_bytes() == b"GIF89a new"
    assert final.stat().st_ino != old_inode  # a new file, not the old rewritten
    assert leftovers(dest) == []


def test_cancelled_saver_writes_nothing(dest: Path) -> None:
    saver = Saver(dest)
    saver.cancel()
    assert saver.save(b"GIF89a", "BR.gif") is False
    assert list(dest.iterdir()) == []


def test_interrupt_during_a_save_leaves_no_temporary(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(src: str, dst: str) -> None:
        assert Path(src).exists()  # the temporary was there until now
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Saver(dest).save(b"GIF89a", "BR.gif")
    assert list(dest.iterdir()) == []
