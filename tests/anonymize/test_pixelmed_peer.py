"""Cross-check with PixelMed 20220618 (Debian ``pixelmed-apps`` and ``libpixelmed-java``).

Every public attribute, at any depth, that PixelMed's DeidentifyAndRedact removes or empties in a
real file, imagelake's default Basic-Profile policy removes or empties too, or the difference is
listed in ``data/pixelmed_differences.csv`` with its reason. A new difference fails, and so does a
listed one that no longer occurs. ``python tests/anonymize/test_pixelmed_peer.py --write``
regenerates the list and keeps the reasons already written (a new row has none, which fails).

How PixelMed runs here (read from the jar with ``javap -c``, and checked by the tests below):

* Once per session, on one folder holding a copy of every real file: a JVM takes seconds to start.
* The second argument is an output *folder*. DeidentifyAndRedact names each output
  ``<remapped SOP Instance UID>_Anon.dcm``: outputs cannot be matched to their inputs, and two
  inputs that share a SOP Instance UID (deid-data's ctbrain1 and ctbrain2) overwrite each other.
  Its subclass DeidentifyAndRedactWithOriginalFileName takes the same arguments and overrides only
  the name, ``<input name without .dcm>_Anon.dcm``; that is the class run here.
* An empty redaction control file gives no region, so no pixel is redacted (the PixelData bytes
  are unchanged, checked below), although PixelMed still records "Burned in text redacted".
* What it removes is fixed in its code, not by arguments: ``removeOrNullIdentifyingAttributes``
  with UIDs and dates kept and descriptors, series descriptors, protocol name, patient
  characteristics, device identity and institution identity all kept, then
  ``remapUIDAttributes`` and (KEEPSAFEPRIVATE) ``removeUnsafePrivateAttributes``. It clears less
  than the Basic Profile; what it does clear, we must clear too.
* A file it cannot decode (JPEG 2000: the Debian build has no codec) is skipped with a message in
  its log; the test requires that message, so no file drops out of the comparison silently.

The state of each non-empty public attribute of the input, in an output: removed; emptied (no
value, or a sequence without items); kept (same value); replaced (another value: a pseudonym, a
dummy, a remapped UID, a shifted date); sequence kept (a sequence that still has items, whose
attributes are then compared one by one). The attributes inside a sequence that is removed or
emptied are removed with it, so they are compared too. UIDs that PixelMed remaps are replaced,
not cleared.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn

import pydicom
import pytest
from deid_phi_helpers import SECRET, real_files
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from imagelake.anonymize import Deidentifier, load_policy

JAR = Path("/usr/share/java/pixelmed.jar")  # Debian libpixelmed-java
MAIN = "com.pixelmed.apps.DeidentifyAndRedactWithOriginalFileName"
# the defaults, spelled out: no decompression, safe private kept, ContributingEquipment added
OPTIONS = ("BLOCK", "KEEPSAFEPRIVATE", "ADDCONTRIBUTINGEQUIPMENT")
DIFFERENCES = Path(__file__).parent / "data" / "pixelmed_differences.csv"
PIXEL_DATA = 0x7FE00010
CLEARED = ("removed", "emptied")
Where = tuple[int, ...]  # tag, item index, tag, ... down to an attribute


class Row(NamedTuple):
    """One documented difference: an attribute (by tag path) and what each side does with it."""

    tag: str
    keyword: str
    pixelmed: str
    ours: str


@dataclass(frozen=True)
class PixelMedRun:
    """Inputs and outputs of one DeidentifyAndRedact run over every real file."""

    inputs: dict[str, Path]  # short name (as in real_files()) -> copy PixelMed read
    outputs: dict[str, Path]  # short name -> PixelMed's output
    log: str


def _missing(reason: str) -> NoReturn:
    """Skip, or under ``CI=true`` fail (tests/conftest.py's policy for missing tools)."""
    __tracebackhide__ = True
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def _run_pixelmed(java: str, root: Path) -> PixelMedRun:
    """Copy every real file into ``root/in`` and de-identify the folder in one JVM."""
    folder, out = root / "in", root / "out"
    folder.mkdir()
    out.mkdir()
    inputs = {}
    for name, path in real_files().items():
        inputs[name] = folder / name.replace("/", "__")
        shutil.copyfile(path, inputs[name])
    regions = root / "no-regions.txt"
    regions.write_text("")
    # a short run: the client compiler and the serial collector start fastest
    jvm = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
    command = [java, *jvm, "-cp", str(JAR), MAIN]
    proc = subprocess.run(
        [*command, str(folder), str(out), str(regions), *OPTIONS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"PixelMed exited with {proc.returncode}: {log[-2000:]}")
    outputs = {
        name: out / (path.name.removesuffix(".dcm") + "_Anon.dcm") for name, path in inputs.items()
    }
    return PixelMedRun(inputs, {k: p for k, p in outputs.items() if p.is_file()}, log)


@pytest.fixture(scope="session")
def pixelmed(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> PixelMedRun:
    java = require_tool("java")
    if not JAR.is_file():
        _missing(f"{JAR} is missing; install the Debian package pixelmed-apps")
    return _run_pixelmed(java, tmp_path_factory.mktemp("pixelmed"))


def _is_empty(elem: DataElement) -> bool:
    value = elem.value
    if value is None or isinstance(value, str | bytes):
        return not value
    return hasattr(value, "__len__") and not isinstance(value, Dataset) and len(value) == 0


def _states(
    before: Dataset, after: Dataset | None, where: Where = ()
) -> Iterator[tuple[Where, str]]:
    """(where, state) for every non-empty public attribute of ``before``, at any depth.

    An attribute inside a sequence item that is gone from ``after`` (``after`` is None: the
    sequence was removed or emptied, or the item dropped) is removed with it.
    """
    for elem in before:
        tag = int(elem.tag)
        if elem.tag.is_private or tag == PIXEL_DATA or _is_empty(elem):
            continue
        here = (*where, tag)
        other = after[tag] if after is not None and tag in after else None
        if other is None:
            state = "removed"
        elif _is_empty(other):
            state = "emptied"
        elif elem.VR == "SQ" and other.VR == "SQ":
            state = "sequence kept"
        else:
            state = "kept" if other.value == elem.value else "replaced"
        yield here, state
        if elem.VR == "SQ":
            items = list(other.value) if other is not None and state == "sequence kept" else []
            for index, item in enumerate(elem.value):
                kept = items[index] if index < len(items) else None
                yield from _states(item, kept, (*here, index))


def _differences(
    source: Dataset, theirs: Dataset, ours: Dataset
) -> Iterator[tuple[Where, str, str]]:
    """(where, their state, our state) for every attribute they clear and we do not."""
    mine = dict(_states(source, ours))
    for where, state in _states(source, theirs):
        if state in CLEARED and mine[where] not in CLEARED:
            yield where, state, mine[where]


def _row(where: Where, theirs: str, ours: str) -> Row:
    tags = where[::2]  # leave out the item indices
    return Row(
        "/".join(f"{t:08X}" for t in tags),
        "/".join(keyword_for_tag(t) or f"{t:08X}" for t in tags),
        theirs,
        ours,
    )


def _observed(run: PixelMedRun) -> tuple[dict[Row, set[str]], int]:
    """Every difference with the files it occurs in, and how many attributes PixelMed cleared."""
    deid = Deidentifier(load_policy(), secret=SECRET)
    found: dict[Row, set[str]] = defaultdict(set)
    cleared = 0
    for name, output in sorted(run.outputs.items()):
        source = pydicom.dcmread(run.inputs[name])
        theirs = pydicom.dcmread(output)
        cleared += sum(state in CLEARED for _, state in _states(source, theirs))
        ours = deid.deidentify(source, subject_key="s").dataset
        for where, their_state, our_state in _differences(source, theirs, ours):
            found[_row(where, their_state, our_state)].add(name)
    return found, cleared


def _documented() -> dict[Row, str]:
    lines = [x for x in DIFFERENCES.read_text("utf-8").splitlines() if not x.startswith("#")]
    return {
        Row(r["tag"], r["keyword"], r["pixelmed"], r["ours"]): r["reason"]
        for r in csv.DictReader(lines)
    }


def test_pixelmed_de_identified_every_file_it_can_read(pixelmed: PixelMedRun) -> None:
    """An output per input, unless PixelMed's log says it cannot decode that file."""
    unread = set(pixelmed.inputs) - set(pixelmed.outputs)
    unexplained = {
        name
        for name in unread
        if not any(
            pixelmed.inputs[name].name in line and "not supported" in line
            for line in pixelmed.log.splitlines()
        )
    }
    assert not unexplained, (
        f"PixelMed wrote nothing for {sorted(unexplained)}: {pixelmed.log[-3000:]}"
    )
    assert len(pixelmed.outputs) > len(unread)
    for name, output in pixelmed.outputs.items():
        source, theirs = pydicom.dcmread(pixelmed.inputs[name]), pydicom.dcmread(output)
        assert theirs.PatientIdentityRemoved == "YES", name
        assert theirs.SOPInstanceUID != source.SOPInstanceUID, name  # remapped
        if source.get("PatientName"):
            assert theirs.get("PatientName") != source.PatientName, name


def test_an_empty_redaction_file_redacts_no_pixel(pixelmed: PixelMedRun) -> None:
    compared = 0
    for name, output in pixelmed.outputs.items():
        before = pydicom.dcmread(pixelmed.inputs[name]).get(PIXEL_DATA)
        after = pydicom.dcmread(output).get(PIXEL_DATA)
        assert (before is None) == (after is None), name
        if before is not None and after is not None:
            assert after.value == before.value, f"{name}: PixelMed changed the pixels"
            compared += 1
    assert compared


def test_the_comparison_sees_a_kept_identifier(pixelmed: PixelMedRun) -> None:
    """The check can fail: an output that kept everything shows what PixelMed cleared."""
    name = "pydicom/CT_small.dcm"
    source = pydicom.dcmread(pixelmed.inputs[name])
    theirs = pydicom.dcmread(pixelmed.outputs[name])
    states = {state for _, _, state in _differences(source, theirs, source)}
    assert "kept" in states and states <= {"kept", "sequence kept"}


def test_we_clear_everything_pixelmed_clears(pixelmed: PixelMedRun) -> None:
    documented = _documented()
    assert all(reason.strip() for reason in documented.values()), "a difference without reason"
    found, cleared = _observed(pixelmed)
    assert cleared >= 100, "too few attributes cleared by PixelMed for the check to mean much"
    new = {f"{row} in {sorted(names)}" for row, names in found.items() if row not in documented}
    assert not new, f"PixelMed clears these, we do not: {sorted(new)}"
    # the documented list stays true: every entry still describes a real difference
    stale = set(documented) - set(found)
    assert not stale, f"listed differences that no longer occur: {sorted(stale)}"


def _write_differences() -> None:
    """Regenerate the CSV from a fresh PixelMed run, keeping the reasons already written."""
    java = shutil.which("java")
    if java is None or not JAR.is_file():
        sys.exit(f"needs java on PATH and {JAR} (Debian pixelmed-apps)")
    reasons = _documented() if DIFFERENCES.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        found, cleared = _observed(_run_pixelmed(java, Path(tmp)))
    text = DIFFERENCES.read_text("utf-8") if DIFFERENCES.is_file() else "# see the test module"
    header = [line for line in text.splitlines() if line.startswith("#")]
    with DIFFERENCES.open("w", encoding="utf-8", newline="") as f:
        f.writelines(line + "\n" for line in header)
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*Row._fields, "reason"])
        for row in sorted(found):
            writer.writerow([*row, reasons.get(row, "")])
    missing = [row for row in found if not reasons.get(row)]
    print(f"wrote {DIFFERENCES}: {len(found)} differences, {cleared} attributes cleared")
    for row in missing:
        print(f"  needs a reason: {row} in {sorted(found[row])}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(
            "usage: test_pixelmed_peer.py --write  (regenerates data/pixelmed_differences.csv)"
        )
    _write_differences()
