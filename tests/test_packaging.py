"""Packaging: servers/ installed as flags2.servers, no symlink, data included.

The repository's ``servers/`` folder becomes ``flags2.servers`` through
setuptools' ``package-dir`` mapping (pyproject.toml), so a clone needs no
symlink, which a Windows checkout without ``core.symlinks`` would turn into a
text file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from flags2.codes import all_country_codes

ROOT = Path(__file__).resolve().parents[1]
NO_CACHE = ["-p", "no:cacheprovider"]
SERVERS_DOCTESTS = ["options", "plan", "server"]  # the servers modules with examples


def test_the_repository_holds_no_symlink() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no index to read")
    listed = subprocess.run(
        [git, "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    links = [line for line in listed.stdout.splitlines() if line.startswith("120000")]
    assert links == []  # mode 120000 is a symlink


def _expected_data() -> list[str]:
    data = ["py.typed", "data/README.md"]
    for cc in all_country_codes():
        cc = cc.lower()
        data += [f"data/flags/{cc}/{cc}.gif", f"data/flags/{cc}/metadata.json"]
    return data


def test_the_installed_servers_package_has_its_data() -> None:
    package = resources.files("flags2.servers")
    missing = [n for n in _expected_data() if not package.joinpath(n).is_file()]
    assert missing == []


def test_the_wheel_installs_servers_as_flags2_servers(tmp_path: Path) -> None:
    """What ``pip install .`` gets, data included, and no top-level ``servers``."""
    pytest.importorskip("setuptools", reason="builds without network: no isolation")
    source = tmp_path / "source"  # a copy: no build/ left in the checkout
    for name in ["flags2", "servers"]:
        shutil.copytree(
            ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    offline = ["--quiet", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            *offline,
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("flags2-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"flags2/servers/{name}" for name in _expected_data()}
    expected |= {f"flags2/servers/{p.name}" for p in (ROOT / "servers").glob("*.py")}
    expected |= {"flags2/py.typed", "flags2/country_codes.txt", "flags2/portable.py"}
    assert expected - names == set()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"flags2"}


@pytest.mark.parametrize(
    ("module", "cwd"),
    [("flags2.servers.slow", "elsewhere"), ("servers.slow", "checkout")],
)
def test_the_slow_server_runs_as_the_book_says(
    module: str, cwd: str, tmp_path: Path
) -> None:
    """``python -m servers.slow`` from a checkout, the installed name from anywhere."""
    ran = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT if cwd == "checkout" else tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    assert f"usage: python -m {module}" in ran.stdout


def test_flags2_servers_imports_from_any_folder(tmp_path: Path) -> None:
    code = "import flags2.servers.launch as m; print(m.__name__, m.shared.__module__)"
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["flags2.servers.launch"] * 2


def test_the_servers_examples_are_collected_once() -> None:
    """The servers' doctests run, under one name, though no flags2/servers exists."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", *NO_CACHE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stdout[-2000:]
    found = re.findall(r"^(?:flags2/)?servers/(\w+)\.py::", collected.stdout, re.M)
    assert Counter(found) == dict.fromkeys(SERVERS_DOCTESTS, 1)


def test_a_checkout_finds_flags2_servers_beside_flags2() -> None:
    # As `python -m flags2` in a clone after `pip install .`: the clone's
    # flags2/ comes first and no install hook maps the name (-S: no site).
    done = subprocess.run(
        [sys.executable, "-S", "-c",
         "import flags2.servers.launch, flags2.servers.slow, flags2.servers;"
         " print(flags2.servers.__file__)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "servers" / "__init__.py"
