"""Value objects and constrained strings shared by the event models."""

import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from hub.contracts.codes import (
    CinFactor,
    ConsentScope,
    HouseholdRelationship,
    PartnerOrganisationType,
)
from hub.contracts.dates import NotAfterToday, NotInFuture
from hub.contracts.identifiers import NhsNumber, Slug, UkPostcode, Upn

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Narrative = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000)]
# Deliberately loose: the hub has to accept what partners' systems hold, and a
# delivery failure tells more than any pattern could.
EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254),
]
PhoneNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ]{5,18}[0-9]$")
]


def _iso_8601(pattern: str, what: str):
    """Refuse anything but an ISO 8601 string (or an already-typed value from Python).

    Pydantic's lax mode would read 0 or "1740756600" as a Unix timestamp, storing a
    different date from the one a partner's system meant.
    """
    shape = re.compile(pattern)

    def check(value: object) -> object:
        if isinstance(value, date):  # datetime too: built in Python, not parsed
            return value
        if isinstance(value, str) and shape.match(value):
            return value
        raise ValueError(f"must be an ISO 8601 {what}")

    return BeforeValidator(check)


IsoDate = Annotated[date, _iso_8601(r"^\d{4}-\d{2}-\d{2}$", "date (YYYY-MM-DD)")]
IsoDateTime = Annotated[
    AwareDatetime, _iso_8601(r"^\d{4}-\d{2}-\d{2}T", "date-time with an offset")
]
# Judged against the day (or the instant) the request is read: see hub.contracts.dates.
DateOfBirth = Annotated[IsoDate, NotAfterToday]
PastDateTime = Annotated[IsoDateTime, NotInFuture]

# Practitioner identities (who decided, who recorded): a login name or e-mail address.
Actor = ShortText


class ValueObject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def duplicates(values: Iterable[object]) -> list[object]:
    """Values that occur more than once, in first-seen order (for error messages)."""
    seen: set[object] = set()
    repeated: list[object] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def check_cin_factors(factors: Iterable[CinFactor], field_name: str) -> None:
    """CIN census rules: each factor once, and "21 no factors" stands alone."""
    factors = list(factors)
    if repeated := duplicates(factors):
        raise ValueError(f"{field_name} repeats {', '.join(map(str, repeated))}")
    if CinFactor.NO_FACTORS in factors and len(factors) > 1:
        raise ValueError(f"{field_name}: 21 (no factors identified) cannot be combined with others")


class Address(ValueObject):
    lines: tuple[ShortText, ...] = Field(min_length=1, max_length=4)
    town: Name
    postcode: UkPostcode


class ContactDetails(ValueObject):
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.email is None and self.phone is None:
            raise ValueError("give an email or a phone number (or both)")
        return self


class Referrer(ContactDetails):
    """Who made a referral, so that they can be told what happened to it."""

    organisation_id: Slug | None = Field(
        default=None, description="Partner id of the referring organisation; none for individuals."
    )
    organisation_type: PartnerOrganisationType | None = None
    organisation_name: ShortText | None = None
    person_name: Name
    role: ShortText | None = None

    @model_validator(mode="after")
    def _organisation_described(self) -> Self:
        if self.organisation_id is not None and (
            self.organisation_type is None or self.organisation_name is None
        ):
            raise ValueError(
                "organisation_type and organisation_name are required with organisation_id"
            )
        return self


class ChildDetails(ValueObject):
    """A child as a referrer describes them, before the hub gives them a person id."""

    given_name: Name
    family_name: Name
    date_of_birth: DateOfBirth | None = None
    expected_date_of_birth: IsoDate | None = Field(
        default=None, description="For an unborn child; then date_of_birth is absent."
    )
    nhs_number: NhsNumber | None = None
    upn: Upn | None = None
    address: Address

    @model_validator(mode="after")
    def _born_or_expected(self) -> Self:
        if (self.date_of_birth is None) == (self.expected_date_of_birth is None):
            raise ValueError("give exactly one of date_of_birth and expected_date_of_birth")
        return self


class Child(ChildDetails):
    person_id: UUID = Field(description="The hub's id for this child.")


class HouseholdMemberDetails(ValueObject):
    """A parent, carer or other household member, before the hub gives them a person id."""

    given_name: Name
    family_name: Name
    relationship: HouseholdRelationship = Field(description="Relationship to the children.")
    date_of_birth: DateOfBirth | None = None
    parental_responsibility: StrictBool


class HouseholdMember(HouseholdMemberDetails):
    person_id: UUID = Field(description="The hub's id for this person.")


class Concerns(ValueObject):
    factors: tuple[CinFactor, ...] = Field(
        min_length=1, description="CIN factors the referrer is worried about."
    )
    description: Narrative

    @model_validator(mode="after")
    def _factors_valid(self) -> Self:
        check_cin_factors(self.factors, "factors")
        return self


class Consent(ValueObject):
    given_by: Name = Field(description="The parent, carer or young person who consented.")
    given_at: PastDateTime
    covers: tuple[ConsentScope, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_scope_once(self) -> Self:
        if repeated := duplicates(self.covers):
            raise ValueError(f"covers repeats {', '.join(map(str, repeated))}")
        return self


class SafeguardingOverride(ValueObject):
    """Information shared without consent because asking would put a child at risk."""

    reason: Narrative
    recorded_by: Actor
    recorded_at: PastDateTime


class Practitioner(ContactDetails):
    """A lead professional or other named worker."""

    worker_id: UUID
    name: Name
    role: ShortText
    team_name: ShortText
    staff_client_id: Slug | None = Field(
        default=None,
        description="The worker's staff sign-in (client id), so a service can tell them "
        "their own cases.",
    )


class SocialCareContact(ContactDetails):
    name: Name
    team: ShortText
