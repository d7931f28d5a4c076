"""Is this child someone the front door already knows? Pure rules, no I/O.

The order follows how sure each identifier makes us: an NHS number is unique to
one person, a unique pupil number nearly so, and name + date of birth + postcode
together are as good as a demographic match gets. Anything less (the same child
at a new address, a name spelt two ways) is only a *possible* match: staff
decide, because joining two families wrongly shares one family's record with
another's workers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from hub.contracts.codes import MatchField
from hub.contracts.common import ChildDetails


def normalise_name(name: str) -> str:
    """Letters only, accents and case folded: "Zoë O'Neil-Smith" and "zoe oneilsmith" agree."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if c.isalpha() and not unicodedata.combining(c)).casefold()


def normalise_postcode(postcode: str) -> str:
    return "".join(postcode.split()).upper()


@dataclass(frozen=True)
class PersonRecord:
    """A person as the front door recorded them (one row per referral they were in)."""

    person_id: UUID
    family_id: UUID
    given_name: str
    family_name: str
    date_of_birth: date | None
    postcode: str
    nhs_number: str | None = None
    upn: str | None = None

    @classmethod
    def of_child(cls, person_id: UUID, family_id: UUID, child: ChildDetails) -> PersonRecord:
        return cls(
            person_id=person_id,
            family_id=family_id,
            given_name=normalise_name(child.given_name),
            family_name=normalise_name(child.family_name),
            date_of_birth=child.date_of_birth,
            postcode=normalise_postcode(child.address.postcode),
            nhs_number=child.nhs_number,
            upn=child.upn,
        )


@dataclass(frozen=True)
class Comparison:
    known: PersonRecord
    certain: bool
    agrees_on: tuple[MatchField, ...]
    differs_on: tuple[MatchField, ...]


def compare(child: PersonRecord, known: PersonRecord) -> Comparison | None:
    """How `child` compares with one record of a known person; None when they are not the same."""
    agrees: list[MatchField] = []
    differs: list[MatchField] = []
    for field, ours, theirs in (
        (MatchField.NHS_NUMBER, child.nhs_number, known.nhs_number),
        (MatchField.UPN, child.upn, known.upn),
        (MatchField.GIVEN_NAME, child.given_name, known.given_name),
        (MatchField.FAMILY_NAME, child.family_name, known.family_name),
        (MatchField.DATE_OF_BIRTH, child.date_of_birth, known.date_of_birth),
        (MatchField.POSTCODE, child.postcode, known.postcode),
    ):
        if ours is None or theirs is None:
            continue
        (agrees if ours == theirs else differs).append(field)

    # A different NHS number or UPN is a different person, whatever else agrees.
    if MatchField.NHS_NUMBER in differs or MatchField.UPN in differs:
        return None
    identified = MatchField.NHS_NUMBER in agrees or MatchField.UPN in agrees
    born_apart = MatchField.DATE_OF_BIRTH in differs
    demographic = {
        MatchField.GIVEN_NAME,
        MatchField.FAMILY_NAME,
        MatchField.DATE_OF_BIRTH,
        MatchField.POSTCODE,
    }
    if identified:
        # The same number with another birth date is a typing error somewhere: ask.
        return Comparison(known, not born_apart, tuple(agrees), tuple(differs))
    if demographic <= set(agrees):
        return Comparison(known, True, tuple(agrees), tuple(differs))
    same_born = {MatchField.FAMILY_NAME, MatchField.DATE_OF_BIRTH} <= set(agrees)
    moved_house = same_born and MatchField.GIVEN_NAME in agrees
    spelt_otherwise = (
        same_born and MatchField.POSTCODE in agrees and child.given_name[:1] == known.given_name[:1]
    )
    if moved_house or spelt_otherwise:
        return Comparison(known, False, tuple(agrees), tuple(differs))
    return None


_CERTAINTY_ORDER = (MatchField.NHS_NUMBER, MatchField.UPN)


def _strength(comparison: Comparison) -> tuple[int, int]:
    """Sort key: certain before possible, NHS number before UPN before demographics."""
    rank = next(
        (i for i, field in enumerate(_CERTAINTY_ORDER) if field in comparison.agrees_on),
        len(_CERTAINTY_ORDER),
    )
    return (0 if comparison.certain else 1, rank)


def best_matches(child: PersonRecord, known: Iterable[PersonRecord]) -> list[Comparison]:
    """Every known person the child may be, strongest first, one comparison per person."""
    by_person: dict[UUID, Comparison] = {}
    for record in known:
        comparison = compare(child, record)
        if comparison is None:
            continue
        held = by_person.get(record.person_id)
        if held is None or _strength(comparison) < _strength(held):
            by_person[record.person_id] = comparison
    # Ties are broken by id so that the answer never depends on the order rows came in.
    return sorted(by_person.values(), key=lambda c: (_strength(c), str(c.known.person_id)))
