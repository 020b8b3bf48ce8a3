"""De-identification profiles: named sets of Table E.1-1 options, kept in a registry.

A profile is the starting point of a project's :class:`~imagelake.anonymize.Policy`; the policy
may add options. Built in: ``"basic"`` (the Basic Application Level Confidentiality Profile with
no option). Third parties add profiles through the entry-point group ``imagelake.deid_profiles``
(an entry point names a :class:`Profile` object).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imagelake._registry import Registry
from imagelake.anonymize._table import Option

__all__ = ["BASIC", "Profile", "profiles"]


@dataclass(frozen=True)
class Profile:
    """A named de-identification profile.

    Parameters
    ----------
    name
        The registry name.
    description
        One line for listings.
    options
        Table E.1-1 option columns applied on top of the Basic Profile.
    """

    name: str
    description: str
    options: frozenset[Option] = field(default_factory=frozenset)


BASIC = Profile(
    "basic",
    "PS3.15 E.1 Basic Application Level Confidentiality Profile, no option",
)

#: Registry of de-identification profiles (entry-point group ``imagelake.deid_profiles``).
profiles: Registry[Profile] = Registry(
    "de-identification profile", "imagelake.deid_profiles", {"basic": BASIC}
)
