"""Write src/imagelake/anonymize/data/table_e1_1_supplement.csv: the Table E.1-1 rows of a later
edition that the packaged 2020 table lacks, from PyPI dicom-anonymizer's dicomfields_2023 lists.

Run from the repository root with dicom-anonymizer installed (it is in the `test` extra):
    python scripts/anonymize/gen_supplement.py

Only the Basic Profile action comes from dicom-anonymizer (its lists carry no option columns).
Option columns follow the rule that every date/time row of the 2020 table obeys (DA/DT/TM:
K under Retain Longitudinal Full Dates, C under Modified Dates) and that UID rows obey (U:
K under Retain UIDs); every other option column is left empty, so the Basic action applies
whatever the options: the conservative choice when the row's options are not known.
"""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
from pathlib import Path

from pydicom.datadict import dictionary_description, dictionary_VR, keyword_for_tag

from imagelake.anonymize import confidentiality_table

OUT = Path("src/imagelake/anonymize/data/table_e1_1_supplement.csv")
LISTS = ["D_TAGS", "Z_TAGS", "X_TAGS", "U_TAGS", "Z_D_TAGS", "X_Z_TAGS", "X_D_TAGS",
         "X_Z_D_TAGS", "X_Z_U_STAR_TAGS"]  # fmt: skip
FIELDS = ["tag", "name", "keyword", "in_std_iod", "basic_profile", "retain_safe_private",
          "retain_uids", "retain_device_identity", "retain_institution_identity",
          "retain_patient_characteristics", "retain_long_full_dates",
          "retain_long_modified_dates", "clean_descriptors", "clean_structured_content",
          "clean_graphics"]  # fmt: skip


def main() -> None:
    ours = {row.tag for row in confidentiality_table() if not getattr(row, "supplement", False)}
    module = importlib.import_module(
        "dicomanonymizer.dicom_anonymization_databases.dicomfields_2023"
    )
    version = importlib.metadata.version("dicom-anonymizer")
    rows = []
    for name in LISTS:
        action = name[:-5].replace("_", "/").replace("U/STAR", "U*")
        for t in getattr(module, name):
            if len(t) != 2:
                continue  # masked groups (50xx, 60xx...) are rows of the 2020 table already
            tag = (t[0] << 16) | t[1]
            key = f"{tag:08X}"
            if key in ours:
                continue
            try:
                vr = dictionary_VR(tag)
                label = dictionary_description(tag)
            except KeyError:
                vr, label = "", ""
            row = dict.fromkeys(FIELDS, "")
            row.update(tag=key, name=label, keyword=keyword_for_tag(tag) or "",
                       in_std_iod="", basic_profile=action)  # fmt: skip
            if vr in ("DA", "DT", "TM"):
                row.update(retain_long_full_dates="K", retain_long_modified_dates="C")
            if action == "U":
                row["retain_uids"] = "K"
            rows.append(row)
    rows.sort(key=lambda r: r["tag"])
    with OUT.open("w", newline="", encoding="utf-8") as f:
        f.write(
            "# Supplement to table_e1_1.csv: rows of a later edition of PS3.15 Table E.1-1 (2023e)\n"
            "# that the packaged 2020 table lacks.\n"
            f"# Source of the Basic Profile action: PyPI dicom-anonymizer {version} (BSD-3-Clause),\n"
            "#   module dicomanonymizer.dicom_anonymization_databases.dicomfields_2023.\n"
            "# Names and keywords: pydicom's data dictionary. in_std_iod: not known (empty).\n"
            "# Option columns: DA/DT/TM rows K (full dates) / C (modified dates), U rows K (retain\n"
            "#   UIDs), as every such row of the 2020 table; all others empty, so the Basic action\n"
            "#   applies whatever the options (conservative). Made by scripts/anonymize/gen_supplement.py.\n"
        )
        w = csv.DictWriter(f, FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
