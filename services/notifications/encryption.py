"""Webhook signing secrets encrypted at rest, with keys that can be rotated.

HMAC needs the secret itself, so it cannot be hashed: it is encrypted with
Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) under the keys of
`EARLYHELP_NOTIFICATIONS_SECRET_KEYS`, a comma-separated list. The first key
encrypts; every key decrypts (MultiFernet), so a key is rotated by putting a new
one first and, once every stored secret has been re-encrypted under it (the
service does that when it starts), removing the old one.

On the embedded default (SQLite) with no keys set, one key is generated into
`<var_dir>/notifications-secret-keys` and kept there (one key a line, the first
encrypts). Anywhere else the keys must be configured: a key generated on a
container's disk would be lost with the container, and with it every secret.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Connection, select, update

from hub.service import StartupError
from notifications.settings import NotificationsSettings

log = logging.getLogger(__name__)

KEY_FILE = "notifications-secret-keys"
SETTING = "EARLYHELP_NOTIFICATIONS_SECRET_KEYS"


class SecretBox:
    """Seals (encrypts) and opens (decrypts) signing secrets under the configured keys."""

    def __init__(self, keys: list[str], source: str) -> None:
        if not keys:
            raise StartupError(f"{source} holds no key")
        try:
            fernets = [Fernet(key.encode()) for key in keys]
        except ValueError as exc:
            raise StartupError(
                f"{source} must hold Fernet keys (32 url-safe base64-encoded bytes each, "
                'comma-separated); generate one with `python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"`'
            ) from exc
        self.source = source
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    def seal(self, secret: str) -> str:
        return self._all.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret; raises `InvalidToken` when none of the keys sealed it."""
        return self._all.decrypt(sealed.encode()).decode()

    def is_current(self, sealed: str) -> bool:
        """Whether the first (current) key sealed it."""
        try:
            self._primary.decrypt(sealed.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, sealed: str) -> str:
        """The same secret sealed under the current key."""
        return self._all.rotate(sealed.encode()).decode()


def split_keys(value: str) -> list[str]:
    return [key for key in re.split(r"[\s,]+", value) if key]


def secret_box(settings: NotificationsSettings, var_dir: Path, *, embedded: bool) -> SecretBox:
    """The configured keys; on the embedded default without any, the key file in var_dir."""
    configured = split_keys(settings.secret_keys.get_secret_value())
    if configured:
        return SecretBox(configured, SETTING)
    if not embedded:
        raise StartupError(
            f"{SETTING} is not set: outside the embedded SQLite default the webhook signing "
            "secrets are encrypted with keys you configure (every replica the same); generate "
            'one with `python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`'
        )
    path = var_dir / KEY_FILE
    _create_key_file(path)
    return SecretBox(split_keys(path.read_text()), str(path))


def _create_key_file(path: Path) -> None:
    """Write a new key unless the file exists, atomically: services or commands starting
    together agree on one key, and none reads a half-written file."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, Fernet.generate_key() + b"\n")
    finally:
        os.close(descriptor)
    try:
        os.link(candidate, path)
    except FileExistsError:
        pass  # another process linked its key first: use that one
    finally:
        candidate.unlink()


def reseal_stored_secrets(conn: Connection, box: SecretBox) -> int:
    """Re-encrypt every stored secret not sealed under the current key; returns how many.

    Raises StartupError when a stored secret opens with none of the keys (a key
    removed too early, or the wrong keys): no webhook of that subscription could
    be signed, and the operator must know at once.
    """
    from notifications.tables import subscriptions

    rows = conn.execute(
        select(
            subscriptions.c.subscription_id,
            subscriptions.c.secret_encrypted,
            subscriptions.c.previous_secret_encrypted,
        ).where(
            subscriptions.c.secret_encrypted.is_not(None)
            | subscriptions.c.previous_secret_encrypted.is_not(None)
        )
    ).all()
    changed = 0
    for row in rows:
        values = {}
        for column in ("secret_encrypted", "previous_secret_encrypted"):
            sealed = getattr(row, column)
            if sealed is None or box.is_current(sealed):
                continue
            try:
                values[column] = box.reseal(sealed)
            except InvalidToken:
                raise StartupError(
                    f"the signing secret of subscription {row.subscription_id} opens with "
                    f"none of the keys in {box.source}: keep the key that sealed it in the "
                    "list until the service has started once with the new key first"
                ) from None
        if values:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.subscription_id == row.subscription_id)
                .values(values)
            )
            changed += 1
    if changed:
        log.info(
            "re-encrypted the signing secrets of %d subscriptions under the current key", changed
        )
    return changed
