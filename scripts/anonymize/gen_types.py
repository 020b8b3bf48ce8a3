import json, csv
import os, sys
# the unpacked wheel's standard/ folder: first argument or $DICOM_STANDARD_DIR (see README.md)
base = os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.environ["DICOM_STANDARD_DIR"], "")
rows = [r for r in csv.DictReader(l for l in open("src/imagelake/anonymize/data/table_e1_1.csv") if not l.startswith("#"))]
compound = {r["tag"] for r in rows if "/" in r["basic_profile"] or r["basic_profile"] == "X"}
sops = json.load(open(base + "sops.json"))
ciods = json.load(open(base + "ciods.json"))
name_to_id = {c["name"]: c["id"] for c in ciods}
c2m = json.load(open(base + "ciod_to_modules.json"))
m2a = json.load(open(base + "module_to_attributes.json"))
order = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
mod_attrs = {}
for a in m2a:
    parts = a["path"].split(":")[1:]
    parts = [p.upper() for p in parts]
    if parts and parts[-1] in compound:
        mod_attrs.setdefault(a["moduleId"], []).append((":".join(parts), a["type"]))
types = {}
for cm in c2m:
    for path, t in mod_attrs.get(cm["moduleId"], []):
        if t not in order: continue
        d = types.setdefault(cm["ciodId"], {})
        if path not in d or order[t] < order[d[path]]:
            d[path] = t
sop_map = {}
missing = set()
for s in sops:
    cid = name_to_id.get(s["ciod"])
    if cid is None: missing.add(s["ciod"]); continue
    sop_map[s["id"]] = cid
out = {
 "_source": ("PyPI dicom-standard 0.1.0 (Innolitics, MIT), files sops.json, ciods.json, ciod_to_modules.json, "
             "module_to_attributes.json (parsed from PS3.3/PS3.4 of the DICOM edition current on 2020-04-07). "
             "Kept: the attribute Type (1, 1C, 2, 2C, 3; strictest over a CIOD's modules) of the attributes whose "
             "Table E.1-1 Basic Profile action is compound (X/Z, Z/D, X/D, X/Z/D, X/Z/U*) or X, by CIOD and by path of "
             "tags from the top level ('GGGGEEEE' or 'SEQ:GGGGEEEE'). Functional group macros are not included."),
 "sop_classes": dict(sorted(sop_map.items())),
 "types": {k: dict(sorted(v.items())) for k, v in sorted(types.items())},
}
json.dump(out, open("src/imagelake/anonymize/data/iod_attribute_types.json", "w"), separators=(",", ":"))
print(len(sop_map), len(types), sum(len(v) for v in types.values()), "missing ciods:", missing)

