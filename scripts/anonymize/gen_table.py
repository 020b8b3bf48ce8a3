import csv, json, io
from pydicom.datadict import keyword_for_tag
import os, sys
# the unpacked wheel's standard/ folder: first argument or $DICOM_STANDARD_DIR (see README.md)
std = sys.argv[1] if len(sys.argv) > 1 else os.environ["DICOM_STANDARD_DIR"]
src = os.path.join(std, "confidentiality_profile_attributes.json")
rows = json.load(open(src))
cols = [("rtnSafePrivOpt","retain_safe_private"),("rtnUIDsOpt","retain_uids"),("rtnDevIdOpt","retain_device_identity"),
("rtnInstIdOpt","retain_institution_identity"),("rtnPatCharsOpt","retain_patient_characteristics"),
("rtnLongFullDatesOpt","retain_long_full_dates"),("rtnLongModifDatesOpt","retain_long_modified_dates"),
("cleanDescOpt","clean_descriptors"),("cleanStructContOpt","clean_structured_content"),("cleanGraphOpt","clean_graphics")]
out = io.StringIO()
out.write("""# DICOM PS3.15 Annex E, Table E.1-1 "Application Level Confidentiality Profile Attributes".
# Source: PyPI package dicom-standard 0.1.0 (Innolitics, MIT licence), file
#   dicom_standard-0.1.0.data/data/standard/confidentiality_profile_attributes.json
#   (wheel entry dated 2020-04-07), which Innolitics parsed from the PS3.15 HTML of the DICOM
#   edition current on that date (2020a/2020b; the JSON does not name the edition).
# Conversion: one row per JSON entry, same order; columns copied verbatim (runs of whitespace in
#   a name folded to one space); only `keyword` was
#   added, from pydicom 3.0.2's data dictionary (empty for tag patterns and retired-only names).
# tag: "GGGGEEEE" hex, "x" = any hex digit; "odd" = every private (odd group) attribute.
# Actions: D dummy, Z zero-length, X remove, K keep, C clean, U replace UID; compound actions
#   (X/Z, Z/D, X/D, X/Z/D, X/Z/U*) leave the choice to the IOD's attribute type.
# Option columns are empty where the option does not change the Basic Profile action.
""")
w = csv.writer(out, lineterminator="\n")
w.writerow(["tag","name","keyword","in_std_iod","basic_profile"]+[c for _,c in cols])
for r in rows:
    t = r["tag"]
    if "ODD" in t:
        tag = "odd"; kw = ""
    else:
        tag = t.strip("()").replace(",","").upper().replace("X","x")
        kw = "" if "x" in tag else (keyword_for_tag(int(tag,16)) or "")
    w.writerow([tag, " ".join(r["name"].split()), kw, r["stdCompIOD"], r["basicProfile"]] + [r.get(k,"") for k,_ in cols])
open("src/imagelake/anonymize/data/table_e1_1.csv","w").write(out.getvalue())
