"""Fixtures of the widget tests: a small demo lake (built once), copies of it, a recording lake."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def small_lake_path(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> Path:
    """The demo lake at size ``small`` (synthetic + real files, raw data, links, alerts)."""
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    from imagelake.demo import run_demo

    root = tmp_path_factory.mktemp("widgets-demo")
    run_demo(
        root / "lake", data_dir=root / "data", size="small", compute=False, echo=lambda _s: None
    )
    return root / "lake"


@pytest.fixture
def lake_copy(small_lake_path: Path, tmp_path: Path) -> Any:
    """A private copy of the small demo lake, for tests that change it."""
    from imagelake import open_lake

    target = tmp_path / "lake"
    shutil.copytree(small_lake_path, target)
    return open_lake(target)


@pytest.fixture
def small_lake(small_lake_path: Path) -> Any:
    """The shared small demo lake, for tests that only read."""
    from imagelake import open_lake

    return open_lake(small_lake_path)


class RecordingLake:
    """A lake double: records every call; reads go to ``inner``, changes are only recorded.

    ``review``, ``add_link`` and ``anonymize`` answer with canned values, so a test can assert
    which library call a widget made without the call changing anything.
    """

    WRITES = ("review", "add_link", "anonymize", "link", "ingest")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name in self.WRITES:
                return self._canned(name, args, kwargs)
            return target(*args, **kwargs)

        return call

    def _canned(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "review":
            return {"link_id": args[0], "status": "accepted" if kwargs["accept"] else "rejected"}
        if name == "add_link":
            return 999
        if name == "anonymize":
            from imagelake.lake._share import AnonymizeReport

            uids = kwargs.get("series_instance_uid") or []
            return AnonymizeReport(destination=str(args[0]), series=len(uids), instances=len(uids))
        return None

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The (args, kwargs) of every call of ``name``."""
        return [(a, k) for n, a, k in self.calls if n == name]


@pytest.fixture
def recording_lake(small_lake: Any) -> RecordingLake:
    """A :class:`RecordingLake` over the shared small lake."""
    return RecordingLake(small_lake)
