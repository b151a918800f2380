"""alprd: automatic licence-plate recognition daemon for Linux."""

__version__ = "0.1.0"
