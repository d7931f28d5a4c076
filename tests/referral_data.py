"""Distinct referrals for tests and the bench: every one about children the hub has not seen.

Intake matches children to the people it knows, so posting the documented example
over and over would refer the same two children again and again, every referral
joining one ever-growing family. These vary what matching looks at (valid NHS
numbers and UPNs of their own, names, dates of birth, postcodes) in the example's
shape and size.
"""

from __future__ import annotations

import copy
import json
import random
import threading
from collections.abc import Iterator
from datetime import date, timedelta

from hub.contracts.identifiers import nhs_number_check_digit, upn_check_letter
from intake.schemas import ReferralSubmission

_EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
_GIVEN = ("Amira", "Yusuf", "Olivia", "Kwame", "Maya", "Theo", "Ines", "Jayden", "Aaliyah", "Oskar")
_FAMILY = ("Hassan", "Okafor", "Smith", "Nowak", "Patel", "Mensah", "Silva", "Khan", "Murphy")
_POSTCODES = ("NW10 8SE", "NW10 4LX", "HA9 0FJ", "NW2 3ED", "HA0 1AA", "NW6 7QA", "NW9 6BX")


def _nhs_numbers(start: int) -> Iterator[str]:
    """Valid NHS numbers from the 999 test range upwards, skipping bases with no check digit."""
    base = start
    while True:
        nine = f"{base:09d}"
        check = nhs_number_check_digit(nine)
        if check is not None:
            yield f"{nine}{check}"
        base += 1


def _upn(serial: int) -> str:
    rest = f"304200{serial:06d}"[:12]
    return upn_check_letter(rest) + rest


class DistinctReferrals:
    """Referral bodies, each about children (and a family) no other body from it mentions.

    `first_nhs_base` sets where its NHS numbers start, so that two generators (a test
    session's and the bench's, say) can be kept apart.
    """

    def __init__(self, seed: int = 7, first_nhs_base: int = 999_100_000) -> None:
        self._rng = random.Random(seed)
        self._numbers = _nhs_numbers(first_nhs_base)
        self._count = 0
        self._lock = threading.Lock()  # tests post from background threads too

    def next_body(self, reference_prefix: str = "REF") -> dict:
        with self._lock:
            return self._next_body(reference_prefix)

    def _next_body(self, reference_prefix: str) -> dict:
        rng, index = self._rng, self._count
        self._count += 1
        body = copy.deepcopy(_EXAMPLE)
        family_name = rng.choice(_FAMILY)
        postcode = rng.choice(_POSTCODES)
        for position, child in enumerate(body["children"]):
            child["given_name"] = rng.choice(_GIVEN)
            child["family_name"] = family_name
            child["date_of_birth"] = (
                date(2008, 1, 1) + timedelta(days=rng.randrange(16 * 365))
            ).isoformat()
            child["nhs_number"] = next(self._numbers)
            child["address"]["postcode"] = postcode
            if "upn" in child:
                child["upn"] = _upn((index * 2 + position) % 1_000_000)
        body["partner_reference"] = f"{reference_prefix}-{index:06d}"
        return body


def distinct_referrals(count: int, seed: int = 7) -> list[bytes]:
    """`count` JSON bodies for the bench, each about children no other body mentions."""
    referrals = DistinctReferrals(seed)
    return [json.dumps(referrals.next_body("BENCH")).encode() for _ in range(count)]
