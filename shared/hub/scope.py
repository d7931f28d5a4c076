"""Whose records a caller may see and act on, from the verified token.

Every query and command of a service takes a `Scope` and applies it itself
(queries in SQL), so that a route cannot forget it. Staff named with
localities or teams are limited to them; staff with neither, and roles that
are authority-wide, see the whole authority; a partner sees what is its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hub.auth import Principal


@dataclass(frozen=True)
class Scope:
    subject: str
    kind: Literal["partner", "staff"]
    name: str
    permissions: frozenset[str]
    organisation: str | None = None
    organisation_type: str | None = None
    roles: frozenset[str] = frozenset()
    localities: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        return cls(
            subject=principal.subject,
            kind=principal.kind,
            name=principal.name,
            permissions=frozenset(principal.scopes),
            organisation=principal.organisation_id,
            organisation_type=principal.organisation_type,
            roles=frozenset(principal.roles),
            localities=frozenset(principal.localities),
            teams=frozenset(principal.teams),
        )

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def authority_wide(self) -> bool:
        """Staff with no localities or teams named work across the whole authority."""
        return self.is_staff and not self.localities and not self.teams

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def covers_locality(self, locality: str | None) -> bool:
        """A locality-limited staff member's localities; authority-wide staff cover all."""
        return self.authority_wide or (locality is not None and locality in self.localities)

    def covers_team(self, team: str | None) -> bool:
        return self.authority_wide or (team is not None and team in self.teams)

    def covers_any_locality(self, localities: Iterable[str | None]) -> bool:
        return any(self.covers_locality(locality) for locality in localities)
