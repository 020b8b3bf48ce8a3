"""What de-identification does to one dataset, as a before/after table (layer L2).

>>> deid = Deidentifier(load_policy(None), secret=key)                      # doctest: +SKIP
>>> after = deid.deidentify(ds, subject_key="site|12345").dataset          # doctest: +SKIP
>>> tag_changes(ds, after)                                                 # doctest: +SKIP
          tag          keyword          before          after   change
0  (0008,0020)        StudyDate        20240305       20231118  replaced
...

The table holds the *values* of both datasets: it is for the person entitled to see the
source (on screen, in a notebook), never for logs. :func:`change_counts` gives counts only.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
from pydicom.dataset import Dataset

__all__ = ["CHANGES", "change_counts", "tag_changes"]

#: the kinds of change, in the order a table shows them
CHANGES: tuple[str, ...] = ("removed", "emptied", "replaced", "added", "kept")

_MAX_TEXT = 64


def _text(ds: Dataset, tag: int) -> str | None:
    if tag not in ds:
        return None
    elem = ds[tag]
    if elem.VR == "SQ":
        return f"<sequence of {len(elem.value or [])} items>"
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        size = len(elem.value) if elem.value is not None else 0
        return f"<{elem.VR} {size} bytes>"
    value = elem.value
    text = "" if value is None else str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def tag_changes(before: Dataset, after: Dataset, *, include_kept: bool = False) -> pd.DataFrame:
    """Top-level attributes of ``before`` and ``after`` side by side, with the kind of change.

    Parameters
    ----------
    before, after
        A dataset and its de-identified copy (pixel data is skipped; sequences and binary
        values are summarised).
    include_kept
        Also list attributes that did not change (by default only changes are listed).

    Returns
    -------
    pandas.DataFrame
        Columns ``tag`` ("(gggg,eeee)"), ``keyword``, ``before``, ``after``, ``change``
        (one of :data:`CHANGES`), sorted by change then tag.
    """
    rows = []
    tags = sorted({int(t) for t in before.keys()} | {int(t) for t in after.keys()})  # noqa: SIM118 - a Dataset iterates over elements
    for tag in tags:
        if tag == 0x7FE00010:  # pixel data
            continue
        old, new = _text(before, tag), _text(after, tag)
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        elif new == "" and old != "":
            change = "emptied"
        elif new != old:
            change = "replaced"
        else:
            change = "kept"
        if change == "kept" and not include_kept:
            continue
        elem = after[tag] if tag in after else before[tag]
        rows.append(
            {
                "tag": f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                "keyword": elem.keyword or ("private" if elem.tag.is_private else ""),
                "before": old if old is not None else "",
                "after": new if new is not None else "",
                "change": change,
            }
        )
    df = pd.DataFrame(rows, columns=["tag", "keyword", "before", "after", "change"])
    if df.empty:
        return df
    order = {c: k for k, c in enumerate(CHANGES)}
    df["_o"] = df.change.map(order)
    return df.sort_values(["_o", "tag"]).drop(columns="_o").reset_index(drop=True)


def change_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many attributes each kind of change touched (counts only: safe to log)."""
    counts = Counter(str(c) for c in table.get("change", []))
    return {c: counts[c] for c in CHANGES if counts[c]}
