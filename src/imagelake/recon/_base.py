"""The reconstructor contract: raw content in, an image volume with provenance out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from imagelake.errors import InvalidInputError
from imagelake.formats import RawArray, RawContent

__all__ = ["ReconError", "ReconResult", "Reconstructor"]


class ReconError(InvalidInputError):
    """Raw content cannot be reconstructed by the chosen method (wrong array, geometry, params)."""


@dataclass(frozen=True)
class ReconResult:
    """An image volume reconstructed from raw data.

    Parameters
    ----------
    volume
        float32 (slice, y, x) in physical units: CT in HU, MR magnitude (arbitrary but
        fixed scale, see the reconstructor).
    pixel_spacing
        (row, column) spacing in mm: (dy, dx).
    slice_thickness
        mm.
    modality
        ``"CT"`` or ``"MR"``.
    orientation
        Direction cosines of the rows and columns (DICOM ImageOrientationPatient).
    origin
        Position (mm) of the first pixel of the first slice (ImagePositionPatient).
    slice_positions
        Position along the slice normal of each slice (mm).
    description
        One line for people (SeriesDescription-like).
    provenance
        ``method``, ``version``, ``params``, ``numpy``, ``inputs`` (array name -> shape),
        ``seconds``: everything needed to say how the pixels were made.
    """

    volume: np.ndarray[Any, np.dtype[np.float32]]
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    modality: str
    orientation: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    slice_positions: tuple[float, ...] = ()
    description: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    units: str = ""

    def __post_init__(self) -> None:
        if self.volume.ndim != 3:
            raise ValueError(f"volume must be (slice, y, x), got shape {self.volume.shape}")
        if self.slice_positions and len(self.slice_positions) != self.volume.shape[0]:
            raise ValueError("one slice position per slice")

    @property
    def method(self) -> str:
        return str(self.provenance.get("method", ""))

    @property
    def version(self) -> str:
        return str(self.provenance.get("version", ""))

    def positions(self) -> list[tuple[float, float, float]]:
        """ImagePositionPatient of each slice."""
        row = np.array(self.orientation[:3])
        col = np.array(self.orientation[3:])
        normal = np.cross(row, col)
        base = np.array(self.origin)
        base = base - normal * float(base @ normal)
        zs = self.slice_positions or tuple(
            float(np.array(self.origin) @ normal) + i * self.slice_thickness
            for i in range(self.volume.shape[0])
        )
        return [tuple(float(v) for v in base + normal * z) for z in zs]  # type: ignore[misc]


class Reconstructor(ABC):
    """A reference reconstruction method. Subclass, declare, implement :meth:`reconstruct`.

    Register it under the entry-point group ``imagelake.reconstructors``; bump ``version``
    whenever its output changes (it goes into the derived series' UIDs).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    #: raw format names (``imagelake.formats``) whose content it handles
    formats: ClassVar[tuple[str, ...]] = ()
    modality: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_params: ClassVar[Mapping[str, Any]] = {}

    def params(self, **params: Any) -> dict[str, Any]:
        """The defaults updated with ``params``; unknown names raise :class:`ReconError`."""
        unknown = sorted(set(params) - set(self.default_params))
        if unknown:
            raise ReconError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(self.default_params)) or 'none'}"
            )
        return {**self.default_params, **params}

    def run(self, content: RawContent, **params: Any) -> ReconResult:
        """Reconstruct ``content`` with the default parameters updated by ``params``."""
        import time

        merged = self.params(**params)
        start = time.perf_counter()
        result, inputs = self.reconstruct(content, merged)
        provenance = {
            "method": self.name,
            "version": self.version,
            "params": merged,
            "numpy": np.__version__,
            "format": content.format,
            "inputs": {a.name: list(a.shape) for a in inputs},
            "seconds": round(time.perf_counter() - start, 3),
        }
        return ReconResult(
            volume=result.volume,
            pixel_spacing=result.pixel_spacing,
            slice_thickness=result.slice_thickness,
            modality=result.modality,
            orientation=result.orientation,
            origin=result.origin,
            slice_positions=result.slice_positions,
            description=result.description,
            provenance=provenance,
            units=result.units,
        )

    def refusal(self, arrays: Collection[str]) -> str | None:
        """Why this method would refuse raw content with these arrays, or ``None``.

        A cheap check on what a raw store holds, without reading it (``Lake.viability``);
        :meth:`reconstruct` applies the same rule. The default refuses nothing.
        """
        return None

    @abstractmethod
    def reconstruct(
        self, content: RawContent, params: Mapping[str, Any]
    ) -> tuple[ReconResult, list[RawArray]]:
        """The image (provenance left empty) and the raw arrays it was made from."""

    def _array(self, content: RawContent, name: str) -> RawArray:
        try:
            return content.arrays[name]
        except KeyError:
            raise ReconError(
                f"{self.name}: the raw content ({content.format}) has no array {name!r}; "
                f"it has {', '.join(content.arrays) or 'none'}"
            ) from None

    def __repr__(self) -> str:
        return f"<reconstructor {self.name!r} v{self.version}>"
