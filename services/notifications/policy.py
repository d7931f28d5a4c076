"""The information-sharing policy: which partner may receive which fields of which event.

Pure: the policy file is read into `SharingPolicy`, checked against the event
contracts, and `share` builds a partner's payload by copying only the fields its
rules allow (an allow-list), never by removing fields from the full event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

import hub.contracts  # noqa: F401  (registers every event type)
from hub.contracts.codes import DataClassification, PartnerOrganisationType
from hub.contracts.registry import EVENT_TYPES
from hub.yaml_files import load_yaml

# The referrer's own reference for the referral, added to what its rules may copy.
PARTNER_REFERENCE = "partner_reference"
_LIST = "[]"
_STRICTNESS = {
    DataClassification.PUBLIC: 0,
    DataClassification.INTERNAL: 1,
    DataClassification.CONFIDENTIAL: 2,
    DataClassification.RESTRICTED: 3,
}


class Condition(StrEnum):
    REFERRER = "referrer"
    SCHOOL_OF_CHILD = "school_of_child"
    TEAM_MEMBER_WITH_CONSENT = "team_member_with_consent"
    NOTIFIED_SCHOOL = "notified_school"


class PolicyError(ValueError):
    """The policy file is not a policy the service can enforce."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Condition
    classification: DataClassification
    category: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9-]+$")
    events: dict[str, tuple[str, ...]]

    @model_validator(mode="after")
    def _fields_exist(self) -> Self:
        for event_type, paths in self.events.items():
            if event_type not in EVENT_TYPES:
                raise ValueError(f"unknown event type {event_type!r}")
            schema = _schema(event_type)
            for path in paths:
                if path == PARTNER_REFERENCE and self.when is Condition.REFERRER:
                    continue
                problem = _path_problem(schema, path)
                if problem:
                    raise ValueError(f"{event_type}: field {path!r} {problem}")
        return self


class PartnerRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inherit: bool = Field(
        default=True, description="Keep the rules for all partners and the partner's type."
    )
    rules: tuple[Rule, ...] = ()


class SharingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    regulation: str = Field(default="ukgdpr", min_length=1)
    all_partners: tuple[Rule, ...] = ()
    partner_types: dict[PartnerOrganisationType, tuple[Rule, ...]] = {}
    partners: dict[str, PartnerRules] = {}

    @classmethod
    def load(cls, path: Path) -> SharingPolicy:
        try:
            document = load_yaml(path.read_text())
            return cls.model_validate(document)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise PolicyError(f"sharing policy {path} is not usable: {exc}") from exc

    def rules_for(self, partner: Partner) -> tuple[Rule, ...]:
        own = self.partners.get(partner.partner_id, PartnerRules())
        if not own.inherit:
            return own.rules
        by_type = (
            self.partner_types.get(partner.organisation_type, ())
            if partner.organisation_type
            else ()
        )
        return (*self.all_partners, *by_type, *own.rules)

    def may_ever_receive(self, partner: Partner, event_type: str) -> bool:
        """Whether any rule could let the partner have this event type."""
        return any(event_type in rule.events for rule in self.rules_for(partner))

    def every_rule(self) -> Iterable[Rule]:
        yield from self.all_partners
        for rules in self.partner_types.values():
            yield from rules
        for own in self.partners.values():
            yield from own.rules

    def journal_paths(self, event_type: str) -> tuple[str, ...]:
        """Every field of `event_type` that some rule could share: all the journal keeps."""
        return tuple(
            sorted(
                {
                    path
                    for rule in self.every_rule()
                    for path in rule.events.get(event_type, ())
                    if path != PARTNER_REFERENCE
                }
            )
        )


@dataclass(frozen=True)
class Partner:
    partner_id: str
    organisation_type: PartnerOrganisationType | None


@dataclass(frozen=True)
class Relation:
    """What the hub knows, at the moment of sending, of one partner's relation to the
    referral or case an event is about."""

    referrer: bool = False
    school_of_child: bool = False
    team_member_with_consent: bool = False
    notified_school: bool = False
    # The partner's own reference for the referral, when it is the referrer.
    partner_reference: str | None = None
    # Under what restricted detail may go (`consent`, `override`, or `statutory_duty` for
    # an Operation Encompass notice to the child's school), when it may.
    basis: str | None = None

    def holds(self, condition: Condition) -> bool:
        return {
            Condition.REFERRER: self.referrer,
            Condition.SCHOOL_OF_CHILD: self.school_of_child,
            Condition.TEAM_MEMBER_WITH_CONSENT: self.team_member_with_consent,
            Condition.NOTIFIED_SCHOOL: self.notified_school,
        }[condition]


@dataclass(frozen=True)
class Shared:
    """An event as one partner may receive it: the allowed data and its labels."""

    data: dict[str, Any]
    classification: DataClassification
    categories: tuple[str, ...]
    # The fields that only a restricted rule lets out, and those rules' conditions: what
    # the disclosure record keeps of each send.
    restricted_paths: tuple[str, ...] = ()
    restricted_rules: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        return ",".join(self.categories)


def share(
    policy: SharingPolicy,
    partner: Partner,
    event_type: str,
    event: Mapping[str, Any],
    relation: Relation,
) -> Shared | None:
    """The payload `partner` may receive of `event`, or None when it may receive nothing."""
    rules = [
        rule
        for rule in policy.rules_for(partner)
        if event_type in rule.events and relation.holds(rule.when)
    ]
    if not rules:
        return None
    source = dict(event)
    if any(rule.when is Condition.REFERRER for rule in rules):
        source[PARTNER_REFERENCE] = relation.partner_reference
    paths = [path for rule in rules for path in rule.events[event_type]]
    restricted = [rule for rule in rules if rule.classification is DataClassification.RESTRICTED]
    return Shared(
        data=minimise(source, paths),
        classification=max((rule.classification for rule in rules), key=_STRICTNESS.__getitem__),
        categories=tuple(sorted({rule.category for rule in rules})),
        restricted_paths=tuple(
            sorted({path for rule in restricted for path in rule.events[event_type]})
        ),
        restricted_rules=tuple(sorted({f"{rule.when}/{rule.category}" for rule in restricted})),
    )


def minimise(document: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A new document holding only the values at `paths` (`a.b`, `a[].b`) of `document`."""
    return _project(document, _tree(paths))


def _tree(paths: Iterable[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for segment in _segments(path):
            node = node.setdefault(segment, {})
    return tree


def _segments(path: str) -> list[str]:
    segments = []
    for part in path.split("."):
        if part.endswith(_LIST):
            segments += [part.removesuffix(_LIST), _LIST]
        else:
            segments.append(part)
    return segments


def _project(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if _LIST in tree:
        if not isinstance(value, list):
            return None
        return [_project(item, tree[_LIST]) for item in value]
    if not isinstance(value, Mapping):
        return None
    return {key: _project(value[key], sub) for key, sub in tree.items() if key in value}


# --- checking paths against the event contracts --------------------------------------


@cache
def _schema(event_type: str) -> dict[str, Any]:
    return EVENT_TYPES[event_type].model_json_schema()


def _path_problem(root: dict[str, Any], path: str) -> str | None:
    """Why `path` is not a value of the event's schema, or None when it is."""
    definitions = root.get("$defs", {})
    node = root
    for segment in _segments(path):
        node = _resolve(node, definitions)
        if segment == _LIST:
            if node.get("type") != "array":
                return "uses [] on something that is not a list"
            node = node.get("items", {})
        else:
            properties = node.get("properties")
            if properties is None or segment not in properties:
                return "is not in the event"
            node = properties[segment]
    node = _resolve(node, definitions)
    if node.get("type") == "object" or "properties" in node:
        return "is an object: list the values inside it instead"
    return None


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and drop the `null` branch of an optional value."""
    while True:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
            continue
        branches = [b for b in node.get("anyOf", ()) if b.get("type") != "null"]
        if len(branches) == 1:
            node = branches[0]
            continue
        return node
