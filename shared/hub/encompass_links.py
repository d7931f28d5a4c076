"""The acknowledgement link in an Operation Encompass e-mail to a school.

A school's designated safeguarding lead reads the notice in the morning, often on a
phone, with no system of the school's connected to the hub: the e-mail's link is how
most schools say they have read it. The link carries the notice, the school and an
HMAC of the two under a key that only intake (which records the acknowledgement) and
notifications (which writes the e-mail) hold, so the link acknowledges that one notice
for that one school and nothing else, and needs no sign-in. Nothing personal is in it.

Opening the link shows a page with a button; only pressing it (a POST) acknowledges,
because mail scanners open the links of every message they check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import cache
from pathlib import Path
from urllib.parse import urlencode
from uuid import UUID

from hub.settings import HubSettings

KEY_FILE = "encompass-link-key"
MIN_KEY_CHARS = 32


def link_key(settings: HubSettings) -> bytes | None:
    """The configured key; on the embedded default (SQLite) without one, the key file in
    var_dir, made on first use and shared by the services of that var_dir; else None:
    links are off."""
    configured = settings.encompass_link_key.get_secret_value()
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ValueError(
                f"EARLYHELP_ENCOMPASS_LINK_KEY must be at least {MIN_KEY_CHARS} characters"
            )
        return configured.encode()
    if not settings.database_url.startswith("sqlite"):
        return None
    return _key_file(Path(settings.var_dir) / KEY_FILE)


@cache
def _key_file(path: Path) -> bytes:
    """The key in `path`, made if absent; read once a process, as it never changes.

    Written whole beside it, then linked into place: intake and notifications start
    together, and neither may read a half-made file; whichever links first wins and the
    other reads its key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def sign(key: bytes, notice_id: UUID, school_id: str) -> str:
    digest = hmac.new(key, f"encompass-ack:{notice_id}:{school_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def verify(key: bytes, notice_id: UUID, school_id: str, token: str) -> bool:
    # As bytes: compare_digest refuses str holding anything but ASCII, and a token
    # from a URL may hold anything.
    expected = sign(key, notice_id, school_id).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", "replace"))


def acknowledgement_link(base_url: str, key: bytes, notice_id: UUID, school_id: str) -> str:
    """The page on intake that lets the school acknowledge the notice."""
    query = urlencode({"school": school_id, "token": sign(key, notice_id, school_id)})
    return f"{base_url.rstrip('/')}/v1/encompass-notices/{notice_id}/acknowledgement-link?{query}"
