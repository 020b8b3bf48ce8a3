"""Refresh docs/screenshots/*.png: the widgets as a browser shows them, on the small demo lake.

Runs the real-browser tests (tests/widgets/test_browser.py: JupyterLab + Debian's chromium via
Playwright), which save one screenshot per widget into ``IMAGELAKE_SCREENSHOTS_DIR``; then makes
each PNG small (a 64-colour palette). Usage::

    .venv/bin/python scripts/screenshots.py            # needs /usr/bin/chromium, '.[jupyter]'
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"


def shrink(path: Path, colours: int = 64) -> None:
    """Rewrite ``path`` as a palette PNG (screenshots of widgets have few colours)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(path, format="PNG", optimize=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMAGELAKE_SCREENSHOTS_DIR": str(OUT)}
    test = REPO / "tests" / "widgets" / "test_browser.py"
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", str(test)], env=env, cwd=REPO)
    for png in sorted(OUT.glob("*.png")):
        shrink(png)
        print(f"{png.relative_to(REPO)}: {png.stat().st_size / 1024:.0f} KiB")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
