"""flags2: download country flags sequentially, with threads, or with asyncio."""

__all__ = ["__version__"]

__version__ = "0.1.0"
