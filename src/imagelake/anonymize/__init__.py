"""De-identification of DICOM datasets to DICOM PS3.15 Annex E (layer L2).

Table E.1-1, with the Basic Profile and every option column, is packaged as data
(``data/table_e1_1.csv``; its header names its source). A project's :class:`Policy` (YAML, read
by :func:`load_policy`) picks a registered profile (:data:`profiles`), options and keep/remove
lists; a :class:`Deidentifier` built from it and a secret turns datasets into de-identified
copies with keyed pseudonyms, UIDs and date shifts (:func:`pseudonym`, :func:`uid_remap`,
:func:`date_shift`), so the same subject and the same UID map to the same values in every run.
Images whose pixels may show identifying text are flagged (:attr:`DeidResult.burned_in_risk`);
:func:`mask_regions` blanks rectangles of their pixels. Raw scanner files (ISMRMRD XML,
Siemens TWIX header text, DICOM-CT-PD, USTB UFF) are de-identified by :func:`anonymize_raw`
with the same keys, so they stay consistent with the DICOM; opaque vendor files are refused.

Example
-------
>>> from imagelake.anonymize import Deidentifier, load_policy
>>> deid = Deidentifier(load_policy({"options": ["retain_long_modified_dates"]}), secret=key)
>>> result = deid.deidentify(ds, subject_key=ds.PatientID)  # doctest: +SKIP
"""

from __future__ import annotations

from imagelake.anonymize._engine import Deidentifier, DeidResult, burned_in_risk, method_codes
from imagelake.anonymize._keyed import date_shift, pseudonym, shift_da, shift_dt, uid_remap
from imagelake.anonymize._pixels import Region, mask_regions
from imagelake.anonymize._policy import Policy, SafePrivate, load_policy
from imagelake.anonymize._profiles import Profile, profiles
from imagelake.anonymize._table import (
    ConfidentialityTable,
    Option,
    TableRow,
    confidentiality_table,
)
from imagelake.anonymize.raw import (
    OpaqueRawError,
    RawAnonymizer,
    RawDeidError,
    RawDeidResult,
    anonymize_raw,
    raw_anonymizers,
)

__all__ = [
    "ConfidentialityTable",
    "DeidResult",
    "Deidentifier",
    "OpaqueRawError",
    "Option",
    "Policy",
    "Profile",
    "RawAnonymizer",
    "RawDeidError",
    "RawDeidResult",
    "Region",
    "SafePrivate",
    "TableRow",
    "anonymize_raw",
    "burned_in_risk",
    "confidentiality_table",
    "date_shift",
    "load_policy",
    "mask_regions",
    "method_codes",
    "profiles",
    "pseudonym",
    "raw_anonymizers",
    "shift_da",
    "shift_dt",
    "uid_remap",
]
