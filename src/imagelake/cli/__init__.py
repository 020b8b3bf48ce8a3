"""``imagelake`` command line: thin commands over the library (see ``imagelake --help``)."""

from imagelake.cli import _remote  # noqa: F401  (registers `imagelake remote`)
from imagelake.cli._main import cli, main

__all__ = ["cli", "main"]
