"""Failures are described by class and by what names no person, on both databases."""

from __future__ import annotations

import ast
import smtplib
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, Field, ValidationError

from hub.contracts.envelope import UndecodableMessage
from hub.db import Database
from hub.privacy import describe_error, error_stack
from hub.settings import REPO_ROOT

CHILD = "Zephyrine Quillfeather"
NHS_NUMBER = "9995123401"


def _failing_insert(database_url: str) -> sa.exc.DBAPIError:
    """A constraint violation on an insert binding a child's values, from a hub engine."""
    db = Database(database_url)
    table = sa.Table(
        "privacy_children",
        sa.MetaData(),
        sa.Column("nhs_number", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100)),
    )
    try:
        table.create(db.engine)
        with db.write() as conn:
            conn.execute(table.insert().values(nhs_number=NHS_NUMBER, name=CHILD))
        with pytest.raises(sa.exc.IntegrityError) as raised, db.write() as conn:
            conn.execute(table.insert().values(nhs_number=NHS_NUMBER, name=CHILD))
        return raised.value
    finally:
        table.drop(db.engine)
        db.dispose()


def test_a_database_error_is_described_by_schema_never_by_its_values(database_url) -> None:
    error = _failing_insert(database_url)
    # What the hub's engines hide, and what PostgreSQL would still have quoted.
    assert "parameters hidden" in str(error)

    described = describe_error(error)
    stack = error_stack(error)

    assert described.startswith("IntegrityError: ")
    assert "privacy_children" in described  # the table (SQLite) or its constraint (PostgreSQL)
    for text in (described, stack):
        assert CHILD not in text and NHS_NUMBER not in text, text
    assert "_failing_insert" in stack


def test_a_validation_error_names_fields_and_rules_not_inputs() -> None:
    class Child(BaseModel):
        name: str = Field(max_length=5)
        date_of_birth: int

    with pytest.raises(ValidationError) as raised:
        Child(name=CHILD, date_of_birth=NHS_NUMBER + "x")

    described = describe_error(raised.value)

    assert described == (
        "ValidationError: 2 invalid in Child: name (string_too_long), date_of_birth (int_parsing)"
    )


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (RuntimeError(f"no such child {CHILD}"), "RuntimeError"),
        (KeyError(CHILD), "KeyError"),
        (smtplib.SMTPRecipientsRefused({"jo@example.org": (550, b"no")}), "SMTPRecipientsRefused"),
        (smtplib.SMTPDataError(554, f"rejected {CHILD}".encode()), "SMTPDataError: SMTP 554"),
        # The hub's own descriptions and infrastructure errors keep their words.
        (UndecodableMessage("header ce_id is empty"), "UndecodableMessage: header ce_id is empty"),
        (ConnectionRefusedError(111, "refused"), "ConnectionRefusedError: [Errno 111] refused"),
    ],
)
def test_messages_are_kept_only_when_they_cannot_quote_a_value(
    error: BaseException, described: str
) -> None:
    assert describe_error(error) == described


def test_a_chained_stack_describes_each_exception_without_its_text() -> None:
    try:
        try:
            raise LookupError(CHILD)
        except LookupError as first:
            raise ValueError(NHS_NUMBER) from first
    except ValueError as second:
        stack = error_stack(second)

    assert CHILD not in stack.replace("raise LookupError(CHILD)", "")
    assert NHS_NUMBER not in stack
    assert stack.index("LookupError") < stack.index("ValueError")


def _create_engine_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "create_engine"
    ]


def test_every_engine_outside_the_unit_tests_hides_its_parameters() -> None:
    """An engine without hide_parameters puts every bound value into its error messages."""
    sources = [
        path
        for folder in ("shared/hub", "services")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if "tests" not in path.relative_to(REPO_ROOT).parts
    ] + [REPO_ROOT / "tests" / "harness.py"]
    exposed = [
        f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
        for path in sources
        for call in _create_engine_calls(path)
        if not any(
            k.arg == "hide_parameters" and getattr(k.value, "value", None) is True
            for k in call.keywords
        )
    ]
    assert not exposed, f"create_engine without hide_parameters=True: {exposed}"
    assert sum(len(_create_engine_calls(path)) for path in sources) >= 4
