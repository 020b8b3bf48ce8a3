"""``imagelake`` command line: thin commands over the library (see ``imagelake --help``)."""

from imagelake.cli._main import cli, main

__all__ = ["cli", "main"]
