"""`EventData`: the base of every event's CloudEvents `data`, and what a subclass must declare."""

import re
from typing import Any, ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from hub.contracts.registry import register_event_type

PRODUCERS = ("intake", "allocation", "caseplan")

_EVENT_TYPE_PATTERN = re.compile(r"earlyhelp\.[a-z_]+\.[a-z_]+\.v(?P<version>[1-9][0-9]*)")


class EventData(BaseModel):
    """Data of one event. A subclass that sets `event_type` is a published contract.

    Such a subclass also sets `schema_version` (the `vN` suffix of the type), `producer`
    (the only service allowed to publish it), `subject()` and an example in
    `model_config["json_schema_extra"]["examples"]`; the class statement fails otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    producer: ClassVar[str]

    family_id: UUID = Field(
        description="The family the event is about: the Kafka key that keeps its events in order."
    )

    def subject(self) -> str:
        """Id of the aggregate (referral or case) the event is about: the CloudEvents subject."""
        raise NotImplementedError

    @classmethod
    def example(cls) -> Self:
        """The first documented example, validated: a ready-made event for tests and docs."""
        return cls.model_validate(cls.examples()[0])

    @classmethod
    def examples(cls) -> list[dict[str, Any]]:
        extra = cls.model_config.get("json_schema_extra")
        return list(extra.get("examples", [])) if isinstance(extra, dict) else []

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Intermediate bases declare no event type and are not contracts.
        if "event_type" in cls.__dict__:
            _check_declaration(cls)
            register_event_type(cls)


def _check_declaration(model: type[EventData]) -> None:
    name = model.__qualname__
    match = _EVENT_TYPE_PATTERN.fullmatch(model.event_type)
    if match is None:
        raise TypeError(f"{name}.event_type {model.event_type!r} is not earlyhelp.<noun>.<verb>.vN")
    if getattr(model, "schema_version", None) != int(match["version"]):
        raise TypeError(f"{name}.schema_version must be {match['version']}, as in its event type")
    if getattr(model, "producer", None) not in PRODUCERS:
        raise TypeError(f"{name}.producer must be one of {', '.join(PRODUCERS)}")
    if model.subject is EventData.subject:
        raise TypeError(f"{name} must define subject()")
    if not model.examples():
        raise TypeError(f"{name} must document an example in json_schema_extra")
