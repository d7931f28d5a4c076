"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The secret is `whsec_` followed by base64 of random bytes; the signature is
`v1,` + base64(HMAC-SHA256(key, f"{webhook_id}.{webhook_timestamp}.{body}")),
where the key is the base64-decoded part of the secret. Several signatures
(during a secret rotation) are separated by spaces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
_SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_use: list[str], webhook_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(secret, webhook_id, timestamp, body) for secret in secrets_in_use
        ),
    }
