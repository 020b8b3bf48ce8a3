"""A factory of realistic, clearly labelled SYNTHETIC DICOM data.

No public package ships a full-size multi-slice CT, so tests, benchmarks and the demo lake
build their own: anthropomorphic-ish phantoms with spatially correlated noise, full and
valid headers (``dciodvfy`` reports no errors), correct geometry, deterministic for a seed.
Every instance says what it is: ``ImageComments = "SYNTHETIC imagelake test data"`` and a
patient named ``SYNTHETIC^...``.

>>> from imagelake import synthetic
>>> paths = synthetic.write_series(synthetic.ct_series(24, 64, 64), "ct")  # doctest: +SKIP
>>> mr = list(synthetic.mr_series(orientation="sagittal", weighting="T2"))  # doctest: +SKIP
>>> series = mr + synthetic.localizer(mr)          # one series, two stacks  # doctest: +SKIP
>>> synthetic.bad_inputs("bad", reference=mr[0])                           # doctest: +SKIP
>>> manifest = synthetic.build_demo_dataset("demo", size="small")          # doctest: +SKIP
>>> g = synthetic.FanBeamGeometry(n_rows=2)                                 # doctest: +SKIP
>>> synthetic.write_ctpd("pd", synthetic.fan_beam_sinogram(g), g)            # doctest: +SKIP

Raw scanner data: :mod:`imagelake.synthetic.sinogram` (CT projections, DICOM-CT-PD),
:mod:`imagelake.synthetic.ultrasound` (USTB UFF channel data),
:mod:`imagelake.synthetic.samples` (real ISMRMRD files from ismrmrd-tools, the twixtools
TWIX examples) and :mod:`imagelake.synthetic.demo_raw` (the demo's raw files).

Layer L1: imports numpy, pydicom (and its codec plugins) and imagelake's L0 only.
"""

from __future__ import annotations

from imagelake.synthetic._headers import (
    DEFAULT_CT_PATIENT,
    DEFAULT_MR_PATIENT,
    GE_SIGNA_PREMIER,
    SIEMENS_SOMATOM_FORCE,
    SYNTHETIC_COMMENT,
    Patient,
    Scanner,
    synthetic_uid,
)
from imagelake.synthetic._image import ORIENTATIONS
from imagelake.synthetic.bad import BAD_INPUT_KINDS, EXPECTED_ERRORS, bad_inputs
from imagelake.synthetic.demo import DEMO_SCANNERS, DemoManifest, DemoSeries, build_demo_dataset
from imagelake.synthetic.localizer import localizer
from imagelake.synthetic.phantom import CorrelatedNoise, CTPhantom, MRPhantom, correlated_noise
from imagelake.synthetic.series import ct_series, mr_series
from imagelake.synthetic.sinogram import (
    FanBeamGeometry,
    fan_beam_sinogram,
    rasterize_phantom,
    write_ctpd,
)
from imagelake.synthetic.writing import (
    LOSSLESS_TRANSFER_SYNTAXES,
    compress,
    transfer_syntax_uid,
    write_series,
)

__all__ = [
    "BAD_INPUT_KINDS",
    "DEFAULT_CT_PATIENT",
    "DEFAULT_MR_PATIENT",
    "DEMO_SCANNERS",
    "EXPECTED_ERRORS",
    "GE_SIGNA_PREMIER",
    "LOSSLESS_TRANSFER_SYNTAXES",
    "ORIENTATIONS",
    "SIEMENS_SOMATOM_FORCE",
    "SYNTHETIC_COMMENT",
    "CTPhantom",
    "CorrelatedNoise",
    "DemoManifest",
    "DemoSeries",
    "FanBeamGeometry",
    "MRPhantom",
    "Patient",
    "Scanner",
    "bad_inputs",
    "build_demo_dataset",
    "compress",
    "correlated_noise",
    "ct_series",
    "fan_beam_sinogram",
    "localizer",
    "mr_series",
    "rasterize_phantom",
    "synthetic_uid",
    "transfer_syntax_uid",
    "write_ctpd",
    "write_series",
]
