"""The hub's public contract: codes, identifiers, event models, topics, CloudEvents envelope."""

# Importing the event modules registers every event type (see registry.py).
from hub.contracts import allocation, caseplan, intake  # noqa: F401
