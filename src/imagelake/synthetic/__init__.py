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
    "MRPhantom",
    "Patient",
    "Scanner",
    "bad_inputs",
    "build_demo_dataset",
    "compress",
    "correlated_noise",
    "ct_series",
    "localizer",
    "mr_series",
    "synthetic_uid",
    "transfer_syntax_uid",
    "write_series",
]
