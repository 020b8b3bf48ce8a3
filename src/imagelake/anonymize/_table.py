"""PS3.15 Table E.1-1 (Basic Profile and option columns), read from the packaged CSV.

The CSV in ``data/table_e1_1.csv`` says in its header where it came from. This module only parses
it: one :class:`TableRow` per attribute, and :class:`ConfidentialityTable` to look a tag up (exact
tags first, then patterns such as ``50xxxxxx`` and ``60xx4000``) and to resolve the action that a
set of options gives an attribute.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from imagelake.errors import ConfigError

__all__ = [
    "ACTIONS",
    "ConfidentialityTable",
    "Option",
    "TableRow",
    "confidentiality_table",
]

#: Every action code that may appear in the table's Basic Profile column.
ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})


class Option(enum.StrEnum):
    """The option columns of Table E.1-1; each value is the CSV column name."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONG_FULL_DATES = "retain_long_full_dates"
    RETAIN_LONG_MODIFIED_DATES = "retain_long_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"

    @classmethod
    def parse(cls, value: str | Option) -> Option:
        """Accept a member or its name in any case (``"retain_uids"``, ``"RETAIN_UIDS"``)."""
        if isinstance(value, Option):
            return value
        key = str(value).strip().lower().replace("-", "_").replace(" ", "_")
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(o.value for o in cls)
            raise ConfigError(
                f"unknown de-identification option {value!r}; choices: {choices}"
            ) from None


# Cleaning options are applied before retaining ones, so that an attribute both cleaned and
# retained (a date under Clean Descriptors and Retain ... Full Dates) ends up retained, as the
# retain options are the explicit wish to keep information.
_OPTION_ORDER = (
    Option.CLEAN_DESCRIPTORS,
    Option.CLEAN_STRUCTURED_CONTENT,
    Option.CLEAN_GRAPHICS,
    Option.RETAIN_SAFE_PRIVATE,
    Option.RETAIN_LONG_MODIFIED_DATES,
    Option.RETAIN_LONG_FULL_DATES,
    Option.RETAIN_PATIENT_CHARACTERISTICS,
    Option.RETAIN_DEVICE_IDENTITY,
    Option.RETAIN_INSTITUTION_IDENTITY,
    Option.RETAIN_UIDS,
)


@dataclass(frozen=True)
class TableRow:
    """One attribute row of Table E.1-1.

    Attributes
    ----------
    tag
        ``"GGGGEEEE"`` (upper-case hex, ``x`` for any digit) or ``"odd"`` for private attributes.
    name, keyword
        The attribute's name in the standard and pydicom's keyword (empty for patterns).
    in_std_iod
        Whether the attribute is used in a standard composite IOD (``"Y"``/``"N"``).
    basic
        The Basic Profile action.
    options
        The action each option gives, for the options that change it.
    supplement
        Whether the row comes from the later-edition supplement, not the packaged table.
    """

    tag: str
    name: str
    keyword: str
    in_std_iod: str
    basic: str
    options: Mapping[Option, str] = field(default_factory=dict)
    supplement: bool = False

    def action(self, options: Iterable[Option]) -> str:
        """The action with ``options`` applied (the last applicable option in table order wins)."""
        chosen = set(options)
        action = self.basic
        for option in _OPTION_ORDER:
            if option in chosen and option in self.options:
                action = self.options[option]
        return action

    def matches(self, tag: int) -> bool:
        """Whether the attribute ``tag`` (a 32-bit int) is covered by this row."""
        if self.tag == "odd":
            return bool((tag >> 16) & 1)
        text = f"{tag:08X}"
        return all(p in ("x", t) for p, t in zip(self.tag, text, strict=True))


class ConfidentialityTable:
    """Table E.1-1 with fast look-up by tag."""

    def __init__(self, rows: Iterable[TableRow]) -> None:
        self.rows: tuple[TableRow, ...] = tuple(rows)
        self._exact: dict[int, TableRow] = {}
        self._patterns: list[tuple[int, int, TableRow]] = []  # (mask, value, row)
        for row in self.rows:
            if row.tag == "odd":
                continue  # private attributes are the engine's business, by private creator
            if "x" in row.tag:
                mask = int("".join("0" if c == "x" else "F" for c in row.tag), 16)
                value = int(row.tag.replace("x", "0"), 16)
                self._patterns.append((mask, value, row))
            else:
                self._exact[int(row.tag, 16)] = row

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[TableRow]:
        return iter(self.rows)

    def lookup(self, tag: int) -> TableRow | None:
        """The row covering the public ``tag`` (exact tags before patterns), or ``None``."""
        row = self._exact.get(tag)
        if row is not None:
            return row
        for mask, value, pattern in self._patterns:
            if tag & mask == value:
                return pattern
        return None

    def by_keyword(self) -> dict[str, TableRow]:
        """Rows of named attributes keyed by pydicom keyword."""
        return {row.keyword: row for row in self.rows if row.keyword}


def _parse(lines: Iterable[str], *, supplement: bool = False) -> Iterator[TableRow]:
    reader = csv.DictReader(line for line in lines if not line.startswith("#"))
    for record in reader:
        basic = record["basic_profile"]
        if basic not in ACTIONS:
            raise ConfigError(f"Table E.1-1 row {record['tag']}: unknown action {basic!r}")
        options = {o: record[o.value] for o in Option if record.get(o.value)}
        yield TableRow(
            tag=record["tag"],
            name=record["name"],
            keyword=record["keyword"],
            in_std_iod=record["in_std_iod"],
            basic=basic,
            options=options,
            supplement=supplement,
        )


@cache
def confidentiality_table() -> ConfidentialityTable:
    """The packaged Table E.1-1 (parsed once)."""
    data = resources.files("imagelake.anonymize").joinpath("data")
    rows = list(_parse(data.joinpath("table_e1_1.csv").read_text("utf-8").splitlines()))
    # rows of a later edition the packaged one lacks (see the supplement's header)
    known = {row.tag for row in rows}
    extra = data.joinpath("table_e1_1_supplement.csv")
    if extra.is_file():
        supplement = _parse(extra.read_text("utf-8").splitlines(), supplement=True)
        rows.extend(row for row in supplement if row.tag not in known)
    return ConfidentialityTable(rows)
