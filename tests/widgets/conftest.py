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

    WRITES = ("review", "add_link", "anonymize", "link", "ingest", "reprocess")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        #: raised by the next canned write instead of answering (an error path)
        self.fail_with: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name in self.WRITES and self.fail_with is not None:
                raise self.fail_with
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
        if name == "reprocess":
            from imagelake.lake._reprocess import ReprocessReport

            return ReprocessReport(
                str(args[0]),
                str(kwargs.get("emulator")),
                "job-000000000000",
                series_instance_uids=["1.2.3.4"],
                link_ids=[41],
                provenance={
                    "image_sha256": {"rootfs": "ab" * 32, "vmlinuz": "cd" * 32},
                    "domain_type": "qemu",
                    "duration_s": 12.5,
                    "chosen_by": "named",
                },
                seconds=14.0,
            )
        return None

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The (args, kwargs) of every call of ``name``."""
        return [(a, k) for n, a, k in self.calls if n == name]


@pytest.fixture
def recording_lake(small_lake: Any) -> RecordingLake:
    """A :class:`RecordingLake` over the shared small lake."""
    return RecordingLake(small_lake)


class FakeManager:
    """An :class:`~imagelake.emulators.EmulatorManager` double: state, no VM, no libvirt.

    With ``down``, :meth:`status` raises like a manager whose libvirtd went away.
    """

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.images = None
        self.closed = False

    def status(self) -> dict[str, Any]:
        if self.down:
            from imagelake.emulators import EmulatorError

            raise EmulatorError("cannot connect to qemu:///system")
        return {
            "uri": "qemu:///system",
            "hypervisor": "QEMU",
            "libvirt_version": "9.0.0",
            "hypervisor_version": "7.2.0",
            "domain_type": "qemu",
            "accel_reason": "no /dev/kvm",
            "max_parallel": 1,
            "domains": [
                {"name": "imagelake-job-x", "kind": "job", "state": "running", "active": True}
            ],
        }

    def list_domains(self) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_manager() -> FakeManager:
    """A :class:`FakeManager` (libvirt up)."""
    return FakeManager()
