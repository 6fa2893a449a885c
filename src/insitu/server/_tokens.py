"""API tokens: ``isk_<id>_<secret>``. The id is public (lists, the audit log); only the
SHA-256 digest of the secret is stored, and a presented secret is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "isk_"
_SHAPE = re.compile(r"^isk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def mint() -> tuple[str, str, str]:
    """A new token: (id, the token to hand out once, the digest to store)."""
    tid = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return tid, f"{PREFIX}{tid}_{secret}", digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    m = _SHAPE.match(token)
    return (m.group(1), m.group(2)) if m else None


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
