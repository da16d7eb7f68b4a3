"""``python -m servers``: start the bundled LOCAL, DELAY and ERROR servers.

$ python -m servers --help
"""

from servers.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m servers"))
