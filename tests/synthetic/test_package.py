"""The public API of imagelake.synthetic is what ``__all__`` says, and it stays at layer L1."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import imagelake.synthetic as synthetic


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(synthetic).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }
    assert set(synthetic.__all__) == public
    assert len(synthetic.__all__) == len(set(synthetic.__all__))


def test_importing_pulls_in_no_other_imagelake_layer() -> None:
    # Layer L1: beyond what ``import imagelake`` itself loads, only errors, config, _optional.
    code = (
        "import sys, imagelake\n"
        "before = set(sys.modules)\n"
        "import imagelake.synthetic\n"
        "allowed = ('imagelake.synthetic', 'imagelake.errors', 'imagelake.config', "
        "'imagelake._optional')\n"
        "new = sorted(m for m in set(sys.modules) - before if m.startswith('imagelake.') "
        "and not m.startswith(allowed))\n"
        "heavy = sorted(m for m in ('scipy', 'zarr', 'xarray', 'dask', 'sqlalchemy') "
        "if m in sys.modules)\n"
        "print(new, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
