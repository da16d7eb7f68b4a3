"""``python -m flags2.servers``: start the bundled LOCAL, DELAY and ERROR servers.

From a checkout ``python -m servers`` runs the same.

$ python -m flags2.servers --help
"""

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main(prog=f"python -m {__package__}"))
