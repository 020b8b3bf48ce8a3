"""Link raw scanner files to their DICOM descendants, with evidence; never guess.

>>> engine = LinkEngine()                                   # doctest: +SKIP
>>> for p in engine.propose(raw_records, series_records):   # doctest: +SKIP
...     print(p.decision, p.confidence, p.reason)

Records (:class:`RawRecord`, :class:`SeriesRecord`) are plain frozen dataclasses; patient
identity enters only as keyed hashes (:func:`patient_keys`, key from
:func:`load_or_create_key`). Rules live in the ``link_rules`` registry (entry-point group
``imagelake.link_rules``). :func:`simulate_cases` builds seeded worlds with decoys and a
known truth, and :func:`evaluate` scores proposals against one.
"""

from __future__ import annotations

from imagelake.linking._engine import LinkEngine, Proposal
from imagelake.linking._records import (
    PatientKeys,
    RawRecord,
    SeriesRecord,
    dicom_datetime,
    is_derived,
    is_localizer,
    load_or_create_key,
    patient_keys,
)
from imagelake.linking._rules import Evidence, LinkContext, LinkRule, link_rules
from imagelake.linking._simulate import LinkCases, LinkScores, evaluate, simulate_cases

__all__ = [
    "Evidence",
    "LinkCases",
    "LinkContext",
    "LinkEngine",
    "LinkRule",
    "LinkScores",
    "PatientKeys",
    "Proposal",
    "RawRecord",
    "SeriesRecord",
    "dicom_datetime",
    "evaluate",
    "is_derived",
    "is_localizer",
    "link_rules",
    "load_or_create_key",
    "patient_keys",
    "simulate_cases",
]
