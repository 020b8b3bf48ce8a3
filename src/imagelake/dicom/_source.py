"""Where an instance's bytes come from: a file, a member of a zip file, or bytes in memory."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

__all__ = ["Source", "StoredInstance"]


@dataclass(frozen=True)
class Source:
    """An input file, picklable so worker processes can open it themselves.

    Attributes
    ----------
    path
        Local path of the file, or of the zip archive holding it.
    member
        Name inside the zip archive, or ``None`` for a plain file.
    """

    path: str
    member: str | None = None

    @property
    def locator(self) -> str:
        """Human-readable location, e.g. ``/data/a.zip!CT/IM0001``."""
        return self.path if self.member is None else f"{self.path}!{self.member}"

    @property
    def name(self) -> str:
        return os.path.basename(self.member or self.path)

    def read_bytes(self) -> bytes:
        if self.member is None:
            with open(self.path, "rb") as fh:
                return fh.read()
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(self.member)

    def size(self) -> int:
        if self.member is None:
            return os.path.getsize(self.path)
        with zipfile.ZipFile(self.path) as zf:
            return zf.getinfo(self.member).file_size


@dataclass(frozen=True)
class StoredInstance:
    """An instance already in the lake: entry ``index`` of a stack store's headers.

    Used when a series gains instances and its stacks are rebuilt from what the lake
    holds plus the new files (the original files may be long gone).
    """

    store_path: str
    index: int

    @property
    def locator(self) -> str:
        return f"{self.store_path}#{self.index}"

    @property
    def name(self) -> str:
        return self.locator
