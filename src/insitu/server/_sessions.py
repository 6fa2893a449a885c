"""Browser sessions: what a person gets after an OIDC login, and how a request proves it.

The session cookie (``insitu_session``, HttpOnly, SameSite=Lax, Secure when the server's
public URL is https) holds ``<id>.<secret>``; the database keeps only the SHA-256 of the
secret, with an expiry and a revocation time. A cookie identifies a caller only when the
request has no ``Authorization`` header (tokens stay how machines authenticate).

CSRF: a request that changes something (any method but GET, HEAD, OPTIONS) made with the
cookie must carry the header ``X-Insitu-CSRF`` with the session's CSRF value, which is
derived from the session secret (an HMAC) and handed to the page in the readable cookie
``insitu_csrf``. Another site can neither read that cookie nor send a custom header to this
origin without a CORS preflight the server never grants, and a value planted from a
sibling domain does not match the session it is checked against.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from insitu.errors import PermissionDenied, Unauthenticated
from insitu.server import _tokens
from insitu.server._access import Principal
from insitu.store import MemberRecord, SessionRecord, Store, UserRecord

COOKIE = "insitu_session"
CSRF_COOKIE = "insitu_csrf"
CSRF_HEADER = "X-Insitu-CSRF"
PREFIX = "ses_"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_FIX = "log in again at /api/v1/auth/login, or send an API token in the Authorization header"


def mint(user: str, *, hours: float, client: str | None, now: float | None = None
         ) -> tuple[SessionRecord, str]:
    """A new session of ``user``: (its record, the cookie value to hand out once)."""
    now = time.time() if now is None else now
    sid = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    rec = SessionRecord(id=sid, user=user, digest=_tokens.digest(secret), created_at=now,
                        expires_at=now + hours * 3600, client=client)
    return rec, f"{sid}.{secret}"


KEEP_ENDED_S = 7 * 24 * 3600  # an ended session is kept this long: it is refused by name


def ended_long_ago(store: Store, user: str, *, now: float | None = None
                   ) -> list[SessionRecord]:
    """``user``'s sessions that expired or were ended more than :data:`KEEP_ENDED_S` ago:
    each login deletes them, so the table holds no more than a week of a person's logins."""
    cutoff = (time.time() if now is None else now) - KEEP_ENDED_S
    return [ses for ses in store.select(SessionRecord, user=user)
            if min(ses.expires_at, ses.revoked_at or ses.expires_at) < cutoff]


def csrf_value(cookie: str) -> str:
    """The CSRF value bound to a session cookie (see the module docstring)."""
    return hmac.new(cookie.encode(), b"insitu-csrf", hashlib.sha256).hexdigest()


def _parse(cookie: str) -> tuple[str, str] | None:
    sid, _, secret = cookie.partition(".")
    if len(sid) != 12 or not secret or len(secret) > 100:
        return None
    return sid, secret


def identify(store: Store, cookie: str, *, now: float | None = None) -> Principal:
    """The person behind a session cookie; :class:`Unauthenticated` for a malformed,
    unknown, expired or revoked session, or one of a removed user."""
    parsed = _parse(cookie)
    if parsed is None:
        raise Unauthenticated("the login cookie is malformed", hint=_FIX)
    sid, secret = parsed
    found = store.select(SessionRecord, id=sid)
    if not found or not _tokens.matches(secret, found[0].digest):
        raise Unauthenticated("the login session is not known", hint=_FIX)
    ses = found[0]
    now = time.time() if now is None else now
    if ses.revoked_at is not None:
        raise Unauthenticated("the login session was ended (logged out)", hint=_FIX)
    if ses.expires_at <= now:
        raise Unauthenticated("the login session has expired", hint=_FIX)
    users = store.select(UserRecord, name=ses.user)
    if not users or users[0].service:
        raise Unauthenticated(f"the login session belongs to no person ({ses.user})",
                              hint=_FIX)
    roles = {m.project: m.role for m in store.select(MemberRecord, user=ses.user)}
    return Principal(user=ses.user, admin=users[0].admin, token=PREFIX + ses.id, scope=None,
                     roles=roles)


def check_csrf(cookie: str, method: str, header: str | None) -> None:
    """Raise unless a request made with the cookie is safe or carries the CSRF value."""
    if method in _SAFE:
        return
    if not header or not hmac.compare_digest(header.encode("utf-8", "replace"),
                                             csrf_value(cookie).encode()):
        raise PermissionDenied(
            f"a change made with a login cookie needs the {CSRF_HEADER} header",
            hint=f"send the value of the {CSRF_COOKIE} cookie in the {CSRF_HEADER} header "
                 "(or use an API token)")


def cookie_options(secure: bool) -> dict[str, Any]:
    return {"httponly": True, "secure": secure, "samesite": "lax", "path": "/"}
