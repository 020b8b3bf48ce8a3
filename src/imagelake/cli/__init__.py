"""``imagelake`` command line: thin commands over the library (see ``imagelake --help``).

``_main`` holds the core commands and the shared helpers; each other module adds the commands
of one feature to the same ``cli`` group (all registered here, in one place).
"""

from imagelake.cli import _mine, _remote, _reprocess, _vm  # noqa: F401  (_remote, _reprocess: decorators)
from imagelake.cli._main import cli, main

_mine.register(cli)
_vm.register(cli)

__all__ = ["cli", "main"]
