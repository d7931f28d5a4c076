"""Keyset pagination for queues ordered by (urgency rank, time, id).

A page ends with an opaque cursor naming the list it belongs to and the last row's
position; the next page is every row after that position. New rows arriving
between pages sort before or after it, so pages never repeat or skip a row.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from uuid import UUID

from sqlalchemy import ColumnElement, and_, or_


class InvalidCursor(ValueError):
    """Not a cursor this API gave out."""


def encode_cursor(listing: str, rank: int, at: datetime, key: str) -> str:
    position = [listing, rank, at.isoformat(), key]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int, datetime, str]:
    """(listing, rank, time, id) of the position a cursor names; InvalidCursor otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        listing, rank, at, key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(listing, str) or type(rank) is not int or not isinstance(at, str):
            raise InvalidCursor(cursor)
        moment = datetime.fromisoformat(at)
        key = str(UUID(key))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidCursor(cursor) from exc
    if moment.tzinfo is None:
        raise InvalidCursor(cursor)
    return listing, rank, moment, key


def after_position(
    rank_column, at_column, key_column, rank: int, at: datetime, key: str
) -> ColumnElement[bool]:
    """Rows that sort after (rank, at, key) in ascending (rank, at, key) order."""
    return or_(
        rank_column > rank,
        and_(
            rank_column == rank,
            or_(at_column > at, and_(at_column == at, key_column > key)),
        ),
    )
