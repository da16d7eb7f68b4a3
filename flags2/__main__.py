"""``python -m flags2``: the same as the ``flags2`` command."""

from flags2.cli import main

__all__: list[str] = []

main()
