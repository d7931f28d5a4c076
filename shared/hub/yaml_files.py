"""The hub's YAML configuration files, read with libyaml's parser where it is installed.

Every service start reads the identities, registry and sharing-policy files; the pure
Python parser spent about 50 ms of CPU on each, libyaml about a tenth of that. The two
accept the same documents and raise the same `yaml.YAMLError`s.
"""

from __future__ import annotations

from typing import Any

import yaml

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """One YAML document, as `yaml.safe_load` would read it."""
    return yaml.load(text, Loader=_SAFE_LOADER)
