"""Ingest lists of files into one lake each, then export every lake (flat layout).

Run as a script by the real-data fixture (tests/export/conftest.py), next to the main
ingest, so both cores work: ``python _ingest_partitions.py SPEC.json``. SPEC is a JSON
list of ``{"lake": folder, "out": folder, "files": [paths]}``. Prints nothing on success.
"""

from __future__ import annotations

import json
import sys
import warnings


def main(spec_path: str) -> None:
    from imagelake.lake import open_lake

    with open(spec_path) as fh:
        spec = json.load(fh)
    for part in spec:
        lake = open_lake(part["lake"], create=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lake.ingest(part["files"], workers=1)
            lake.export(part["out"], layout="flat")


if __name__ == "__main__":
    main(sys.argv[1])
