import pytest
from pydantic import TypeAdapter, ValidationError

from hub.contracts.identifiers import (
    NhsNumber,
    Slug,
    UkPostcode,
    Upn,
    nhs_number_check_digit,
    normalise_nhs_number,
    postcode_district,
    postcode_sector,
    upn_check_letter,
)

nhs_number = TypeAdapter(NhsNumber)
upn = TypeAdapter(Upn)
postcode = TypeAdapter(UkPostcode)


def error_message(adapter: TypeAdapter, value: object) -> str:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    return caught.value.errors()[0]["msg"]


# 943 476 5919 is the NHS's published example of a valid number.
@pytest.mark.parametrize("value", ["9434765919", "943 476 5919", " 943 476 5919 "])
def test_valid_nhs_numbers_are_normalised_to_ten_digits(value):
    assert nhs_number.validate_python(value) == "9434765919"


def test_nhs_check_digit_matches_the_published_example():
    assert nhs_number_check_digit("943476591") == 9


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9434765918", "fails the modulus 11 check"),
        ("943476591", "must be 10 digits"),
        ("94347659190", "must be 10 digits"),
        ("943-476-5919", "must be 10 digits"),
        ("94347659\uff119", "must be 10 digits"),  # a full-width digit is not ASCII
        # The first nine digits give a check digit of 10: no valid number starts so.
        ("9990000000", "fails the modulus 11 check"),
    ],
)
def test_invalid_nhs_numbers_are_rejected_with_a_reason(value, message):
    assert message in error_message(nhs_number, value)


def test_nhs_number_is_not_coerced_from_an_int():
    with pytest.raises(ValidationError):
        nhs_number.validate_python(9434765919)


def test_nhs_error_does_not_echo_the_number():
    with pytest.raises(ValueError) as caught:
        normalise_nhs_number("9434765918")
    assert "9434765918" not in str(caught.value)


def test_upn_published_example_is_valid():
    # python-stdnum's documented example of a valid UPN (B801200005001).
    assert upn_check_letter("801200005001") == "B"
    assert upn.validate_python("b801 2000 05001") == "B801200005001"


def test_temporary_upn_ending_in_a_letter():
    temporary = upn_check_letter("30420011912A") + "30420011912A"
    assert upn.validate_python(temporary) == temporary


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("A801200005001", "check letter"),  # stdnum's example with a wrong check letter
        ("B207000016049", "check letter"),  # an invalid UPN from a census error 1510 help page
        ("B80120000500", "13 characters"),
        ("B80120000A001", "13 characters"),
        ("I801200005001", "13 characters"),
        ("B80120000500O", "13 characters"),
    ],
)
def test_invalid_upns_are_rejected_with_a_reason(value, message):
    assert message in error_message(upn, value)


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("NW10 2AB", "NW10 2AB"),
        ("nw102ab", "NW10 2AB"),
        ("  ne28   7th ", "NE28 7TH"),
        ("W1A 1AA", "W1A 1AA"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("GIR 0AA", "GIR 0AA"),
    ],
)
def test_valid_postcodes_are_normalised(value, normalised):
    assert postcode.validate_python(value) == normalised


@pytest.mark.parametrize(
    "value", ["NW10", "NW10 2A", "QW1 2AB", "NW10 2CB", "1W10 2AB", "NW10 2AB X", ""]
)
def test_invalid_postcodes_are_rejected(value):
    assert error_message(postcode, value) == "not a valid UK postcode"


def test_postcode_district_and_sector():
    assert postcode_district("NW10 2AB") == "NW10"
    assert postcode_sector("NW10 2AB") == "NW10 2"
    assert postcode_district("w1a1aa") == "W1A"
    assert postcode_sector("w1a1aa") == "W1A 1"


def test_slugs():
    slug = TypeAdapter(Slug)
    assert slug.validate_python("brent-harlesden") == "brent-harlesden"
    for bad in ["Brent", "brent harlesden", "", "a" * 65]:
        with pytest.raises(ValidationError):
            slug.validate_python(bad)


def test_json_schema_publishes_the_normalised_form():
    assert nhs_number.json_schema()["pattern"] == "^[0-9]{10}$"
    assert postcode.json_schema()["type"] == "string"
    assert upn.json_schema()["pattern"].startswith("^[ABCDEFGHJ")
