from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from flags2 import save
from flags2.save import (
    FATAL_ERRNOS,
    MAX_NAME_BYTES,
    BadFlag,
    BadName,
    NotAFile,
    Saver,
    check_flag,
    country_file_name,
)
from tests.helpers import flag_bytes, leftovers


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


def test_an_interrupt_as_the_temporary_is_made_leaves_it_to_cancel(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The signal is acted on as os.open returns: the file exists, but the
    # write never got to the cleanup that knows its name.
    made: list[str] = []

    def interrupted(folder: str, prefix: str, suffix: str) -> tuple[int, str]:
        fd, path = real(folder, prefix, suffix)
        os.close(fd)
        made.append(path)
        raise KeyboardInterrupt

    real = save._create_temporary
    monkeypatch.setattr(save, "_create_temporary", interrupted)
    saver = Saver(dest)
    with pytest.raises(KeyboardInterrupt):
        saver.save(b"GIF89a", "BR.gif")
    assert [Path(path).name for path in made] == leftovers(dest)  # left behind
    live = dest / ".CN.gif.live1234.part"  # another run's write, locked
    with live.open("wb") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        saver.cancel()  # as the run's Ctrl-C handling does
        assert leftovers(dest) == [live.name]


STALE = [
    ".BR.gif.k2j4x9ab.part",
    ".ZW.gif.a_1b2c3d.part",
    ".Brazil.gif.k2j4x9ab.flags2.part",  # --names
    ".Côte_d'Ivoire.gif.a_1b2c3d.flags2.part",
]
KEPT = [
    ".Brazil.gif.k2j4x9ab.part",  # a name's temporary always says flags2
    ".Brazil.gif.short.flags2.part",
    ".BR.gif.part",  # no random part
    "BR.gif.abc12345.part",  # not hidden
    ".br.gif.abc12345.part",  # not a code
    ".BR.gif.abc12345.part.bak",
    ".BRA.gif.abc12345.part",
    "notes.part",
    "BR.gif",
]


def test_a_new_saver_sweeps_exactly_its_own_stale_temporaries(dest: Path) -> None:
    for name in STALE + KEPT:
        (dest / name).write_bytes(b"GIF89a half")
    saver = Saver(dest)
    assert saver.swept == len(STALE)
    assert sorted(p.name for p in dest.iterdir()) == sorted(KEPT)


def test_the_sweep_spares_a_temporary_another_run_is_writing(dest: Path) -> None:
    live = dest / ".BR.gif.live1234.part"
    with live.open("wb") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # as Saver.save holds it
        assert Saver(dest).swept == 0
        assert live.exists()
    assert Saver(dest).swept == 1  # the lock is gone: it is stale now
    assert not live.exists()


def test_the_sweep_never_follows_a_link_nor_waits_on_a_fifo(
    dest: Path, tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    (dest / ".BR.gif.link1234.part").symlink_to(target)
    os.mkfifo(dest / ".CN.gif.fifo1234.part")
    Saver(dest)
    assert target.read_text() == "keep"
    assert (dest / ".CN.gif.fifo1234.part").exists()


def test_a_saver_for_a_missing_folder_sweeps_nothing(tmp_path: Path) -> None:
    assert Saver(tmp_path / "not-yet").swept == 0


def _failing_write(code: int) -> Callable[[int, bytes], None]:
    """A stand-in for the save's write that meets `code` (ENOSPC...)."""

    def write(fd: int, body: bytes) -> None:
        raise OSError(code, os.strerror(code))

    return write


@pytest.mark.parametrize("code", sorted(FATAL_ERRNOS))
def test_a_write_error_every_flag_would_meet_cancels_the_saver(
    dest: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    saver = Saver(dest)
    monkeypatch.setattr(save, "_write_all", _failing_write(code))
    with pytest.raises(OSError) as caught:
        saver.save(b"GIF89a", "BR.gif")
    assert caught.value.errno == code
    assert saver.failed is caught.value and saver.failed_file == "BR.gif"
    monkeypatch.undo()
    assert saver.save(b"GIF89a", "CN.gif") is False  # refused from now on
    assert list(dest.iterdir()) == []


def test_a_write_error_of_one_file_does_not_cancel(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = Saver(dest)
    monkeypatch.setattr(save, "_write_all", _failing_write(errno.EIO))
    with pytest.raises(OSError):
        saver.save(b"GIF89a", "BR.gif")
    monkeypatch.undo()
    assert saver.failed is None
    assert saver.save(b"GIF89a", "CN.gif") is True
    assert sorted(p.name for p in dest.iterdir()) == ["CN.gif"]
    assert saver.saved == {"CN.gif": 6}


def test_a_temporary_that_cannot_be_created_cancels_too(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    saver = Saver(dest)
    monkeypatch.setattr(save, "_create_temporary", read_only)
    with pytest.raises(OSError):
        saver.save(b"GIF89a", "BR.gif")
    assert saver.failed is not None and saver.failed.errno == errno.EROFS


@pytest.mark.parametrize(
    ("country", "name"),
    [
        ("Brazil", "Brazil.gif"),
        ("United States of America", "United_States_of_America.gif"),
        ("Côte d'Ivoire", "Côte_d'Ivoire.gif"),
        ("  Brazil", "Brazil.gif"),
        ("a..b", "a..b.gif"),
        ("Saint Kitts. Nevis", "Saint_Kitts._Nevis.gif"),
        ("CONGO", "CONGO.gif"),  # only the device names themselves
        ("Console", "Console.gif"),
        ("COM10", "COM10.gif"),
        ("LPT", "LPT.gif"),
        ("NULL.x", "NULL.x.gif"),
        ("a-CON", "a-CON.gif"),
    ],
)
def test_a_country_name_is_a_file_name(country: str, name: str) -> None:
    assert country_file_name(country) == name


@pytest.mark.parametrize(
    ("country", "problem"),
    [
        ("../../etc/x", "a path separator"),
        ("/abs", "a path separator"),
        ("a\\b", "a path separator"),
        (".hidden", "a leading dot"),
        ("..", "a leading dot"),
        (".", "a leading dot"),
        ("", "empty"),
        ("   ", "empty"),
        ("nul\0", "U+0000"),
        ("\x1b[31m", "U+001B"),
        ("c1\x85mid", "U+0085"),
        ("tab\there", "U+0009"),
        ("rtl\u202eoverride", "U+202E"),
        ("zero\u200bwidth", "U+200B"),
        ("lone\ud800", "U+D800"),
        ("x" * (MAX_NAME_BYTES - 3), "longer than"),
        *((f"a{ch}b", f"a character Windows forbids ({ch})") for ch in '<>:"|?*'),
        ("Brazil.", "a trailing dot or space"),
        ("Brazil ", "a trailing dot or space"),
        ("Brazil...", "a trailing dot or space"),
        ("Brazil . ", "a trailing dot or space"),
        ("CON .gif", "a device name on Windows (CON)"),
        ("  aux", "a device name on Windows (AUX)"),
        ("é" * 120, "longer than"),  # 240 bytes, though only 120 characters
    ],
)
def test_an_unsafe_country_name_is_refused(country: str, problem: str) -> None:
    with pytest.raises(BadName, match="unsafe country name") as info:
        country_file_name(country)
    assert problem in str(info.value)


# Windows' device names, as it reserves them: any case, any extension.
WINDOWS_DEVICES = (
    "CON con Prn aux NUL nul.txt NUL.tar.gz CONIN$ conout$ COM0 COM1 com9 LPT1"
    " lpt9 COM\xb9 COM\xb2 COM\xb3 LPT\xb9 lpt\xb2 LPT\xb3"
).split()


@pytest.mark.parametrize("country", WINDOWS_DEVICES)
def test_a_windows_device_name_is_refused(country: str) -> None:
    device = country.partition(".")[0].upper()
    with pytest.raises(BadName, match="unsafe country name") as info:
        country_file_name(country)
    assert str(info.value).endswith(f": a device name on Windows ({device})")


def test_the_longest_name_still_has_room_for_its_temporary(dest: Path) -> None:
    name = country_file_name("x" * (MAX_NAME_BYTES - 4))
    assert len(name.encode()) == MAX_NAME_BYTES
    assert Saver(dest).save(b"GIF89a", name)
    assert (dest / name).read_bytes() == b"GIF89a"


@pytest.mark.parametrize("name", ["", ".", "..", "../BR.gif", "/tmp/BR.gif", "a\0"])
def test_save_writes_only_inside_its_folder(dest: Path, name: str) -> None:
    saver = Saver(dest)
    with pytest.raises(BadName):
        saver.save(b"GIF89a", name)
    with pytest.raises(BadName):
        saver.existing(name)
    assert list(dest.iterdir()) == []


def test_existing_tells_a_whole_gif_from_a_cut_one(dest: Path) -> None:
    saver = Saver(dest)
    whole, cut = flag_bytes("BR"), flag_bytes("CN")[:-1]
    (dest / "BR.gif").write_bytes(whole)
    (dest / "CN.gif").write_bytes(cut)
    (dest / "DE.gif").symlink_to(dest / "BR.gif")
    (dest / "FR.gif").symlink_to(dest / "nowhere")
    assert saver.existing("BR.gif") == len(whole)
    assert saver.existing("CN.gif") is None
    assert saver.existing("DE.gif") == len(whole)  # a link to a whole flag
    assert saver.existing("FR.gif") is None  # dangling: saved anew
    assert saver.existing("IN.gif") is None


def test_existing_refuses_what_is_not_a_file(dest: Path) -> None:
    (dest / "BR.gif").mkdir()
    with pytest.raises(NotAFile, match=r"BR\.gif exists and is a folder, not a file"):
        Saver(dest).existing("BR.gif")


def test_save_remembers_the_file_of_each_code(dest: Path) -> None:
    saver = Saver(dest)
    saver.save(b"GIF89a", "Brazil.gif", "BR")
    assert saver.files == {"BR": "Brazil.gif"}
    assert saver.saved == {"Brazil.gif": 6}


def test_a_process_pool_worker_saver_never_sweeps(dest: Path) -> None:
    """A worker starts while others write: its sweep could take a temporary
    between its creation and its lock. The parent's Saver swept already."""
    stale = dest / ".BR.gif.k2j4x9ab.part"
    stale.write_bytes(b"GIF89a")
    saver = Saver(dest, sweep=False)
    assert saver.swept == 0
    assert stale.exists()
    assert saver.save(flag_bytes("BR"), "BR.gif")


@pytest.mark.parametrize("replace_open", [True, False], ids=["posix", "windows"])
def test_a_temporary_swept_before_its_lock_is_written_again(
    dest: Path, monkeypatch: pytest.MonkeyPatch, replace_open: bool
) -> None:
    # The temporary is visible before the save can lock it: a run starting in
    # that instant sweeps it. Forced here by sweeping from inside its creation
    # (and, where the file is closed before os.replace, from inside the replace).
    mkstemp, replace = save._create_temporary, os.replace
    sweeps: list[int] = []

    def create_then_sweep(*args: object, **kwargs: object) -> tuple[int, str]:
        made = mkstemp(*args, **kwargs)  # type: ignore[arg-type]
        if not sweeps:
            sweeps.append(Saver(dest).swept)  # another run starting here
        return made

    def sweep_then_replace(src: str, dst: str) -> None:
        if len(sweeps) == 1:
            sweeps.append(Saver(dest).swept)
        replace(src, dst)

    monkeypatch.setattr(save, "_create_temporary", create_then_sweep)
    if not replace_open:
        monkeypatch.setattr(save, "_REPLACE_OPEN", False)
        monkeypatch.setattr(os, "replace", sweep_then_replace)
    body = flag_bytes("BR")
    assert Saver(dest).save(body, "BR.gif")
    assert sweeps[0] == 1  # the interleaving happened: it was swept
    assert (dest / "BR.gif").read_bytes() == body
    assert leftovers(dest) == []


def test_a_save_out_of_descriptors_waits_instead_of_failing(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mkstemp, calls = save._create_temporary, []

    def exhausted(*args: object, **kwargs: object) -> tuple[int, str]:
        calls.append(1)
        if len(calls) < 3:  # another flag gives its descriptor back soon
            raise OSError(errno.EMFILE, "Too many open files")
        return mkstemp(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(save, "_create_temporary", exhausted)
    saver = Saver(dest)
    assert saver.save(flag_bytes("BR"), "BR.gif")
    assert len(calls) == 3 and saver.failed is None
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")


def test_a_short_write_is_finished(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write = os.write

    def at_most_100(fd: int, data: bytes) -> int:
        return write(fd, data[:100])  # as a disk nearly full, or a signal, may

    monkeypatch.setattr(os, "write", at_most_100)
    body = flag_bytes("BR")
    assert Saver(dest).save(body, "BR.gif")
    monkeypatch.undo()
    assert (dest / "BR.gif").read_bytes() == body
    assert leftovers(dest) == []


def test_a_temporary_name_in_use_is_never_taken(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another run's live temporary, and a user's link, under the first names
    # drawn: the save takes neither (O_EXCL) and draws again.
    draws = iter([bytes.fromhex("00000001"), bytes.fromhex("00000002")])
    urandom = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: next(draws, None) or urandom(n))
    (dest / ".BR.gif.00000001.part").write_bytes(b"theirs")
    (dest / "target").write_text("keep")
    (dest / ".BR.gif.00000002.part").symlink_to(dest / "target")
    assert Saver(dest, sweep=False).save(flag_bytes("BR"), "BR.gif")
    assert (dest / ".BR.gif.00000001.part").read_bytes() == b"theirs"
    assert (dest / "target").read_text() == "keep"
    assert (dest / "BR.gif").read_bytes() == flag_bytes("BR")
