"""flags2: download country flags sequentially, with threads, or with asyncio.

The bundled servers live in the repository's top-level ``servers/`` folder,
which packaging installs as ``flags2.servers``. Run from a checkout itself
(``python -m flags2`` in the clone, where the clone's ``flags2/`` comes first
on ``sys.path`` and has no ``servers`` inside), the same name is found beside
it: the checkout's folder is a second place for this package's submodules.
An installed copy holds ``flags2/servers`` and is left as it is.
"""

from pathlib import Path

__all__ = ["__version__"]

__version__ = "0.1.0"

_here = Path(__file__).resolve().parent
if (
    not (_here / "servers").is_dir()
    and (_here.parent / "servers" / "__init__.py").is_file()
):
    __path__.append(str(_here.parent))
