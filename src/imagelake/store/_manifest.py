"""Fixity: sha256 of every object of a store, in ``manifest.json``, checked by verify."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from imagelake._fs import LakeFS

__all__ = ["MANIFEST", "FixityProblem", "verify_store", "write_manifest"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FixityProblem:
    """One finding of :func:`verify_store`."""

    store_path: str
    object: str
    problem: str  # "missing", "changed", "unexpected", "manifest changed", "manifest missing"

    def __str__(self) -> str:
        return f"{self.store_path}/{self.object}: {self.problem}"


def write_manifest(
    lakefs: LakeFS, store_rel: str, *, sources: dict[str, str], extra: dict[str, Any]
) -> str:
    """Hash every object under ``store_rel``, write the manifest, return its sha256.

    ``sources`` maps SOPInstanceUID (or raw file name) to the sha256 of the source file.
    """
    objects = {}
    for rel in lakefs.walk_files(store_rel):
        if rel == MANIFEST:
            continue
        full = f"{store_rel}/{rel}"
        objects[rel] = {"sha256": lakefs.sha256(full), "size": lakefs.size(full)}
    body = {"objects": objects, "sources": sources, **extra}
    data = json.dumps(body, sort_keys=True, indent=1).encode()
    lakefs.write_atomic(f"{store_rel}/{MANIFEST}", data)
    return hashlib.sha256(data).hexdigest()


def verify_store(
    lakefs: LakeFS, store_rel: str, manifest_sha256: str | None = None
) -> list[FixityProblem]:
    """Every missing, changed or unexpected object of a store (empty list: intact)."""
    problems: list[FixityProblem] = []
    if not lakefs.exists(f"{store_rel}/{MANIFEST}"):
        return [FixityProblem(store_rel, MANIFEST, "manifest missing")]
    raw = lakefs.read_bytes(f"{store_rel}/{MANIFEST}")
    if manifest_sha256 is not None and hashlib.sha256(raw).hexdigest() != manifest_sha256:
        problems.append(FixityProblem(store_rel, MANIFEST, "manifest changed"))
    objects: dict[str, dict[str, Any]] = json.loads(raw)["objects"]
    present = {rel for rel in lakefs.walk_files(store_rel) if rel != MANIFEST}
    for rel, expected in sorted(objects.items()):
        if rel not in present:
            problems.append(FixityProblem(store_rel, rel, "missing"))
        elif lakefs.sha256(f"{store_rel}/{rel}") != expected["sha256"]:
            problems.append(FixityProblem(store_rel, rel, "changed"))
    for rel in sorted(present - set(objects)):
        problems.append(FixityProblem(store_rel, rel, "unexpected"))
    return problems
