"""Anonymized shares: a derived lake, safe to hand to another site (issue 4, item 3).

>>> report = lake.anonymize("/data/share-lake", Modality="CT", vault=vault)   # doctest: +SKIP

The selected series are regenerated as DICOM from the source lake (byte-exact headers,
identical pixels), de-identified with :class:`imagelake.anonymize.Deidentifier` under the
project's policy (the PS3.15 Basic Profile with keyed pseudonyms by default), and ingested
into the destination lake, which gets its own registry, index, catalog and audit log. The
source lake is only read.

- **Same pseudonyms every run.** Pseudonyms, UIDs and date shifts are keyed by a secret
  kept outside every lake (``deid_secret_file``; made on first use). Re-running adds only
  the new data, under the same pseudonyms.
- **Burned-in text is held back.** Images whose pixels may show identifying text (the
  BurnedInAnnotation flag; US, SC, OT, XA and ES data; screen captures) are left out and
  counted until a person has reviewed them.
- **Re-identification vault.** With ``vault=``, each pseudonym's identifiers are sealed in
  it (:mod:`imagelake.vault`), so authorized people can link back.
- **Raw files go along.** With ``raw=True`` (the default), the raw parents of the shared
  series (accepted links) are de-identified with the same keys
  (:func:`imagelake.anonymize.anonymize_raw`: ISMRMRD XML, TWIX header text, DICOM-CT-PD,
  UFF), so their UIDs, pseudonyms and dates match the DICOM, and the share's own linking
  pass finds the links again. Opaque vendor files cannot be de-identified: they are left
  out and counted.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from imagelake.errors import ConfigError

__all__ = ["DEFAULT_DEID_SECRET_FILE", "AnonymizeReport", "anonymize_lake"]

#: where the secret for pseudonyms, UIDs and date shifts lives unless a setting says otherwise
DEFAULT_DEID_SECRET_FILE = "~/.config/imagelake/deid.key"


@dataclass
class AnonymizeReport:
    """What one anonymized share did (counts only: no identifiers)."""

    destination: str
    series: int = 0
    instances: int = 0
    instances_new: int = 0
    held_back: int = 0
    held_back_reasons: dict[str, int] = field(default_factory=dict)
    subjects: int = 0
    raw_files: int = 0
    raw_refused: int = 0
    vault_records_new: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        held = ""
        if self.held_back:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.held_back_reasons.items()))
            held = f"; {self.held_back} held back for review of burned-in text ({reasons})"
        raw = f", {self.raw_files} raw files" if self.raw_files else ""
        if self.raw_refused:
            raw += (
                f" ({self.raw_refused} raw files left out: opaque, or a format without a "
                "raw-header anonymizer; they cannot be de-identified)"
            )
        return (
            f"{self.series} series{raw}, {self.instances} instances de-identified for "
            f"{self.subjects} subjects ({self.instances_new} new in {self.destination}){held}; "
            f"{self.vault_records_new} new vault records ({self.seconds:.1f} s)"
        )


def _secret(path: str | None) -> bytes:
    from imagelake.linking import load_or_create_key

    return load_or_create_key(os.path.expanduser(path or DEFAULT_DEID_SECRET_FILE))


def _identity(ds: pydicom.Dataset) -> dict[str, str]:
    out = {}
    for keyword in (
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
    ):
        value = ds.get(keyword)
        if value not in (None, ""):
            out[keyword] = str(value)
    return out


def _share_raw(
    source: Any,
    deid: Any,
    series: Mapping[str, str],
    originals: Path,
    out: Path,
    report: AnonymizeReport,
) -> None:
    """De-identify the raw parents of the shared series into ``out`` (one folder each)."""
    from imagelake.anonymize import OpaqueRawError, anonymize_raw, raw_anonymizers

    links = source.links("accepted")
    links = links[links.series_instance_uid.isin(list(series))]
    for sha, group in links.groupby("raw_sha256"):
        row = source._raw_row(str(sha))
        if row.format == "opaque" or row.format not in raw_anonymizers:
            # nobody can de-identify it (an opaque blob, or a format without an anonymizer):
            # it stays home, counted
            report.raw_refused += 1
            continue
        subject_key = series[str(group.series_instance_uid.iloc[0])]
        restored = source.restore_raw(str(sha), originals)
        files = [p for p in restored if not p.name.endswith(".imagelake.yaml")]
        folder = out / str(sha)[:12]
        folder.mkdir(parents=True)
        target = folder if len(files) > 1 else folder / files[0].name
        try:
            anonymize_raw(
                files if len(files) > 1 else files[0],
                row.format,
                deid,
                target,
                subject_key=subject_key,
            )
        except OpaqueRawError:
            report.raw_refused += 1
            continue
        report.raw_files += 1


def anonymize_lake(
    source: Any,
    destination: str | os.PathLike[str],
    filters: Mapping[str, Any],
    *,
    policy: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    vault: Any = None,
    secret_file: str | None = None,
    raw: bool = True,
) -> AnonymizeReport:
    """De-identify the series of ``source`` matching ``filters`` into the lake ``destination``.

    ``source`` is a :class:`imagelake.lake.Lake`; ``vault`` an open
    :class:`imagelake.vault.Vault` (or ``None``). See the module docstring.
    """
    from imagelake.anonymize import Deidentifier, load_policy
    from imagelake.lake._lake import open_lake

    started = time.perf_counter()
    dest_url = os.fspath(destination)
    if os.path.abspath(dest_url) == os.path.abspath(source.url):
        raise ConfigError("the anonymized share must be another lake than its source")
    source_policy = Path(policy) if isinstance(policy, os.PathLike) else policy
    deid = Deidentifier(load_policy(source_policy), secret=_secret(secret_file))
    report = AnonymizeReport(destination=dest_url)
    subjects: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="imagelake-share-") as tmp:
        exported = Path(tmp) / "exported"
        clean = Path(tmp) / "deidentified"
        clean.mkdir()
        selected = source.export(exported, dict(filters), layout="flat")
        series: dict[str, str] = {}  # SeriesInstanceUID -> subject key
        for n, path in enumerate(sorted(selected.files)):
            ds = pydicom.dcmread(path)
            identity = _identity(ds)
            subject_key = "|".join(
                (identity.get("IssuerOfPatientID", ""), identity.get("PatientID", ""))
            )
            series[str(ds.get("SeriesInstanceUID", ""))] = subject_key
            result = deid.deidentify(ds, subject_key=subject_key, inplace=True)
            if result.burned_in_risk:
                report.held_back += 1
                key = result.burned_in_risk.split(":")[0]
                report.held_back_reasons[key] = report.held_back_reasons.get(key, 0) + 1
                continue
            result.dataset.save_as(clean / f"{n:07d}.dcm", enforce_file_format=True)
            report.instances += 1
            if result.pseudonym:
                subjects.setdefault(result.pseudonym, identity)
        report.series = len(series)
        inputs = [clean]
        if raw:
            raw_out = Path(tmp) / "raw"
            raw_out.mkdir()
            _share_raw(source, deid, series, Path(tmp) / "raw-originals", raw_out, report)
            inputs.append(raw_out)
        dest = open_lake(dest_url, create=True)
        ingested = dest.ingest(inputs, link=raw)
        report.instances_new = ingested.instances_new
    report.subjects = len(subjects)
    if vault is not None:
        for pseudonym, identity in sorted(subjects.items()):
            if vault.put(pseudonym, identity):
                report.vault_records_new += 1
    report.seconds = time.perf_counter() - started
    return report
