"""Validated identifiers for people and places: NHS number, UPN, UK postcode, slugs.

Each annotated type normalises its input (spaces, case) and publishes the normalised
form in JSON Schema. Errors are `PydanticCustomError`s, which are also `ValueError`s,
so the `normalise_*` functions serve plain code as well as models. Messages never
echo the value: it is personal data.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

SLUG_PATTERN = re.compile(r"[a-z0-9-]+")

# The DfE alphabet for UPN check letters and temporary-UPN letters: I, O and S are left out
# because they read as 1, 0 and 5.
UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"

# BS 7666 letter rules for the outward code (area letters, district letters and digits),
# then the inward code: sector digit and two unit letters without C, I, K, M, O, V.
_POSTCODE_PATTERN = re.compile(
    r"(?P<outward>"
    r"[A-PR-UWYZ][0-9]{1,2}"
    r"|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]"
    r"|GIR"
    r")(?P<inward>[0-9][ABD-HJLNP-UW-Z]{2})"
)


def nhs_number_check_digit(first_nine_digits: str) -> int | None:
    """The modulus 11 check digit for nine digits, or None when no valid number has them."""
    total = sum(
        int(digit) * weight
        for digit, weight in zip(first_nine_digits, range(10, 1, -1), strict=True)
    )
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def normalise_nhs_number(value: str) -> str:
    compact = "".join(value.split(" "))
    if len(compact) != 10 or not compact.isascii() or not compact.isdigit():
        raise PydanticCustomError(
            "nhs_number", "NHS number must be 10 digits (spaces between groups are allowed)"
        )
    if nhs_number_check_digit(compact[:9]) != int(compact[9]):
        raise PydanticCustomError(
            "nhs_number", "NHS number fails the modulus 11 check: a digit is wrong"
        )
    return compact


def upn_check_letter(last_twelve: str) -> str:
    """The DfE check letter for characters 2-13 of a UPN (weights 2-13, modulus 23)."""
    total = sum(
        weight * (int(char) if char.isdigit() else UPN_LETTERS.index(char))
        for weight, char in enumerate(last_twelve, start=2)
    )
    return UPN_LETTERS[total % 23]


def normalise_upn(value: str) -> str:
    compact = "".join(value.split()).upper()
    serial_end = compact[12:]
    if (
        len(compact) != 13
        or not compact.isascii()
        or compact[0] not in UPN_LETTERS
        or not compact[1:12].isdigit()
        or not (serial_end.isdigit() or serial_end in UPN_LETTERS)
    ):
        raise PydanticCustomError(
            "upn",
            "UPN must be 13 characters: a check letter, 11 digits, then a digit "
            "(or a letter other than I, O, S for a temporary UPN)",
        )
    if upn_check_letter(compact[1:]) != compact[0]:
        raise PydanticCustomError(
            "upn", "UPN check letter (first character) does not match the other twelve"
        )
    return compact


def normalise_postcode(value: str) -> str:
    compact = "".join(value.split()).upper()
    match = _POSTCODE_PATTERN.fullmatch(compact)
    if match is None:
        raise PydanticCustomError("uk_postcode", "not a valid UK postcode")
    return f"{match['outward']} {match['inward']}"


def postcode_district(postcode: str) -> str:
    """The outward code, e.g. "NW10" for "NW10 2AB": coarse enough to share widely."""
    return normalise_postcode(postcode).split(" ")[0]


def postcode_sector(postcode: str) -> str:
    """The outward code and sector digit, e.g. "NW10 2" for "NW10 2AB"."""
    return normalise_postcode(postcode)[:-2]


NhsNumber = Annotated[
    str,
    AfterValidator(normalise_nhs_number),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{10}$",
            "description": "NHS number: 10 digits without spaces, modulus 11 check digit last.",
        }
    ),
]

Upn = Annotated[
    str,
    AfterValidator(normalise_upn),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^[{UPN_LETTERS}][0-9]{{11}}[0-9{UPN_LETTERS}]$",
            "description": (
                "DfE Unique Pupil Number: check letter, LA number (3), establishment number"
                " (4), year (2), serial (3; a temporary UPN ends in a letter)."
            ),
        }
    ),
]

UkPostcode = Annotated[
    str,
    AfterValidator(normalise_postcode),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$",
            "description": "UK postcode in upper case with one space, e.g. NW10 2AB.",
        }
    ),
]

Slug = Annotated[
    str,
    StringConstraints(pattern=f"^{SLUG_PATTERN.pattern}$", min_length=1, max_length=64),
]

# A school's unique reference number (URN) on Get Information about Schools: six digits.
SchoolUrn = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$", min_length=6, max_length=6)]
# A school's DfE establishment number as LAESTAB: the three-digit local authority code
# followed by the four-digit establishment number, e.g. 3042001.
DfeEstablishmentNumber = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{7}$", min_length=7, max_length=7)
]
