"""The transfer service's credential: one secret per cluster, and the signed, expiring URLs
made with it.

Every node of a cluster and every step that fetches from one holds the same secret. It
comes from ``INSITU_TRANSFER_SECRET`` (the secret itself, for orchestrators that inject
secrets as environment variables), else from the file named by
``INSITU_TRANSFER_SECRET_FILE``; ``insitu cluster up`` writes one such file, once, with
mode 0600, beside its ``cluster.json`` and gives its path to every node it starts.

A request names a path and an expiry and carries ``HMAC-SHA256(secret, "GET /shard" path
expiry)``. Signed URLs rather than the secret as a bearer header: the service speaks plain
HTTP between nodes, and what crosses the wire then is good for one path for a few minutes,
never the secret that opens every node's data for good. The signature is checked (constant
time) before the service looks at its filesystem at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from insitu.errors import UserError

SECRET_ENV = "INSITU_TRANSFER_SECRET"
SECRET_FILE_ENV = "INSITU_TRANSFER_SECRET_FILE"
TTL = 300.0          # seconds a signed URL stays good (room for clocks a little apart)
MAX_AHEAD = 3600.0   # an expiry further ahead than this is refused: no everlasting URLs
_MIN_BYTES = 16


class TransferSecretMissing(UserError):
    """No transfer secret is configured where a transfer service or fetch needs one."""


def generate() -> str:
    return secrets.token_urlsafe(32)


def write_secret_file(path: Path) -> Path:
    """Create ``path`` holding a new secret (mode 0600), unless it exists: a cluster's
    secret is made once. Returns ``path``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(generate() + "\n")
    return path


def load_secret(environ: dict[str, str] | None = None) -> bytes:
    """This process's transfer secret (see the module docstring); raises
    :class:`TransferSecretMissing` naming what to set when there is none or it is too short."""
    env = os.environ if environ is None else environ
    where = SECRET_ENV
    value = env.get(SECRET_ENV, "").strip()
    if not value and env.get(SECRET_FILE_ENV):
        where = env[SECRET_FILE_ENV]
        try:
            value = Path(where).read_text().strip()
        except OSError as e:
            raise TransferSecretMissing(
                f"the transfer secret file {where} cannot be read ({e.strerror or e})",
                hint=f"make it readable by this user, or set {SECRET_FILE_ENV} to the "
                     "cluster's secret file") from None
    if not value:
        raise TransferSecretMissing(
            "no transfer secret: the node transfer service refuses to run without one",
            hint=f"set {SECRET_ENV} (the same value on every node and where steps run) or "
                 f"{SECRET_FILE_ENV}; `insitu cluster up` sets it for its nodes")
    if len(value.encode()) < _MIN_BYTES:
        raise TransferSecretMissing(
            f"the transfer secret from {where} is too short ({len(value)} characters)",
            hint=f"use at least {_MIN_BYTES} random characters, e.g. python -c "
                 "\"import secrets; print(secrets.token_urlsafe(32))\"")
    return value.encode()


def signature(secret: bytes, path: str, expires: int) -> str:
    msg = f"GET /shard\n{path}\n{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign(secret: bytes, path: str, *, ttl: float = TTL, now: float | None = None
         ) -> dict[str, str]:
    """The query parameters of a signed request for ``path``."""
    expires = int((time.time() if now is None else now) + ttl)
    return {"path": path, "expires": str(expires), "sig": signature(secret, path, expires)}


def verify(secret: bytes, path: str, expires: str, sig: str, *, now: float | None = None
           ) -> str | None:
    """None when the request is good, else why not (for the refusal; names no secret)."""
    try:
        when = int(expires)
    except ValueError:
        return "the expiry is not a number"
    good = hmac.compare_digest(signature(secret, path, when).encode(),
                               sig.encode("ascii", "replace"))
    if not good:
        return "the signature does not match"
    t = time.time() if now is None else now
    if when < t:
        return "the signed URL has expired"
    if when > t + MAX_AHEAD:
        return "the signed URL's expiry is too far ahead"
    return None
