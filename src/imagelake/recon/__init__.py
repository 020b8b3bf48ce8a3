"""Reference reconstructions of raw scanner data, and their output as DICOM series.

A lazy registry of :class:`Reconstructor` objects (entry-point group
``imagelake.reconstructors``), like :mod:`imagelake.formats`:

>>> content = get_format("ismrmrd").open("scan.h5")            # doctest: +SKIP
>>> recon = reconstructors_for("ismrmrd")[0]                     # doctest: +SKIP
>>> result = recon.run(content)                                  # doctest: +SKIP
>>> write_recon_series(result, content.meta, "out", raw_sha256=sha)  # doctest: +SKIP

Built in: ``mr-cartesian`` (inverse FFT, readout crop, root-sum-of-squares; equals Debian's
``ismrmrd_recon_cartesian_2d``) and ``ct-fbp`` (equiangular fan-beam filtered
back-projection of DICOM-CT-PD projections, in HU). They are reference methods for checking
data and linking, not a vendor's product reconstruction.

Layer L2: imports formats, dicom, synthetic, errors and config only.
"""

from __future__ import annotations

from imagelake._registry import Registry
from imagelake.recon._base import ReconError, ReconResult, Reconstructor
from imagelake.recon.output import write_recon_series

__all__ = [
    "ReconError",
    "ReconResult",
    "Reconstructor",
    "get_reconstructor",
    "reconstructors",
    "reconstructors_for",
    "write_recon_series",
]

#: every reconstructor class, by name: built-ins first, then entry points
reconstructors: Registry[type[Reconstructor]] = Registry(
    "reconstructor",
    "imagelake.reconstructors",
    {
        "mr-cartesian": "imagelake.recon.mr:MrCartesian",
        "ct-fbp": "imagelake.recon.ct:CtFanBeamFbp",
    },
)


def get_reconstructor(name: str) -> Reconstructor:
    """An instance of the reconstructor registered as ``name``."""
    return reconstructors.get(name)()


def reconstructors_for(format_name: str) -> list[Reconstructor]:
    """Instances of every reconstructor that handles raw format ``format_name``."""
    return [cls() for cls in reconstructors.available().values() if format_name in cls.formats]
