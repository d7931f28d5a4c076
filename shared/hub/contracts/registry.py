"""Every event type the hub knows, by its CloudEvents `type`.

`EventData` subclasses register themselves here when their module is imported;
importing any `hub.contracts` module imports them all (see the package `__init__`).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.contracts.base import EventData

EVENT_TYPES: dict[str, "type[EventData]"] = {}


class UnknownEventType(LookupError):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


def register_event_type(model: "type[EventData]") -> None:
    registered = EVENT_TYPES.setdefault(model.event_type, model)
    if registered is not model:
        raise TypeError(
            f"{model.__qualname__} declares event type {model.event_type!r}, "
            f"already taken by {registered.__module__}.{registered.__qualname__}"
        )


def event_model(event_type: str) -> "type[EventData]":
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None
