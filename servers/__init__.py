"""Bundled test servers for flags2: LOCAL, DELAY and ERROR."""
