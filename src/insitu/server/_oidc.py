"""OpenID Connect login for people (authorization code flow with PKCE), with Authlib.

:func:`begin` stores a login in progress (the SHA-256 of its ``state``, its nonce and PKCE
verifier, ten minutes) and returns the provider's authorization URL; the browser also gets
the state in a short-lived HttpOnly cookie, so a callback must come back to the browser that
began it. :func:`finish` checks the state against that cookie and the database (one use),
exchanges the code (with the verifier), verifies the ID token (signature with a key from
the provider's JWKS, found through its discovery document; issuer, audience, expiry, nonce)
and maps it to an insitu user by one claim: ``email`` matches a user's email (only when the
provider says it is verified), any other claim a user's name. Nobody is created unless
``auto_provision`` is on, and then as a plain user: never an administrator, a member of no
project. Service accounts never log in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from insitu.errors import PermissionDenied, Unauthenticated, UserError
from insitu.store import LoginRecord, Store, UserRecord

LOGIN_COOKIE = "insitu_login"
LOGIN_SECONDS = 600.0
LEEWAY = 60             # seconds of clock difference allowed on exp/iat
_CACHE_SECONDS = 3600.0
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_RELOGIN = "start again at /api/v1/auth/login"


class ProviderError(UserError):
    """The identity provider cannot be used (unreachable, or its answers are not valid)."""


@dataclass(frozen=True, kw_only=True)
class OIDCConfig:
    issuer: str
    client_id: str
    client_secret: str | None = None
    user_claim: str = "email"
    auto_provision: bool = False
    redirect_url: str | None = None      # None: this server's own /api/v1/auth/callback
    session_hours: float = 12.0
    scope: str = "openid email profile"

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.issuer)
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in _LOOPBACK):
            raise UserError(f"the OIDC issuer {self.issuer!r} is not an https URL",
                            hint="give --oidc-issuer as https://... (plain http is allowed "
                                 "only on this machine's loopback, for testing)")
        if not self.client_id:
            raise UserError("the OIDC client id is empty", hint="pass --oidc-client-id ID")


@dataclass
class Provider:
    """The provider's discovery document and keys, fetched when first needed and cached;
    the keys are fetched again when an ID token names a key id not seen yet."""

    config: OIDCConfig
    _meta: dict[str, Any] | None = None
    _keys: dict[str, Any] | None = None
    _at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _get(self, url: str) -> dict[str, Any]:
        import httpx

        try:
            r = httpx.get(url, timeout=10, follow_redirects=False)
            r.raise_for_status()
            data = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise ProviderError(f"the identity provider does not answer {url} ({e})",
                                hint="check --oidc-issuer and that the provider is up") \
                from None
        if not isinstance(data, dict):
            raise ProviderError(f"{url} did not answer a JSON object",
                                hint="check --oidc-issuer")
        return data

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta is None or time.time() - self._at > _CACHE_SECONDS:
                issuer = self.config.issuer.rstrip("/")
                meta = self._get(f"{issuer}/.well-known/openid-configuration")
                if meta.get("issuer") != self.config.issuer:
                    raise ProviderError(
                        f"the provider's discovery document names the issuer "
                        f"{meta.get('issuer')!r}, not {self.config.issuer!r}",
                        hint="give --oidc-issuer exactly as the provider writes it")
                for k in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(meta.get(k), str):
                        raise ProviderError(f"the provider's discovery document has no {k}",
                                            hint="check --oidc-issuer")
                self._meta, self._keys, self._at = meta, None, time.time()
            return self._meta

    def keys(self, kid: str | None) -> Any:
        from joserfc.jwk import KeySet

        meta = self.metadata()
        with self._lock:
            known = self._keys is not None and (
                kid is None or any(k.get("kid") == kid for k in self._keys.get("keys", [])))
            if not known:
                self._keys = self._get(meta["jwks_uri"])
            assert self._keys is not None
            return KeySet.import_key_set(self._keys)  # type: ignore[arg-type]


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def safe_next(value: str | None) -> str:
    """Where to send the browser after login: a path on this server only."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value \
            and not re.search(r"[\x00-\x1f]", value):
        return value
    return "/api/v1/whoami"


def _client(config: OIDCConfig, redirect_uri: str) -> Any:
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(client_id=config.client_id, client_secret=config.client_secret,
                        scope=config.scope, redirect_uri=redirect_uri,
                        code_challenge_method="S256",
                        token_endpoint_auth_method="client_secret_basic"
                        if config.client_secret else "none", timeout=10)


def begin(provider: Provider, store: Store, *, redirect_uri: str, next_url: str | None
          ) -> tuple[str, str]:
    """Start a login: (the provider's authorization URL, the state for the browser)."""
    from authlib.common.security import generate_token

    meta = provider.metadata()
    state, nonce, verifier = (secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                              generate_token(64))
    now = time.time()
    for old in store.select(LoginRecord):  # logins abandoned at the provider
        if old.expires_at <= now:
            store.delete(LoginRecord, id=old.id)
    store.put(LoginRecord(id=_digest(state), nonce=nonce, verifier=verifier,
                          next=safe_next(next_url), created_at=now,
                          expires_at=now + LOGIN_SECONDS))
    with _client(provider.config, redirect_uri) as client:
        url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state,
                                                 nonce=nonce, code_verifier=verifier)
    return str(url), state


def finish(provider: Provider, store: Store, *, params: dict[str, str],
           browser_state: str | None, redirect_uri: str) -> tuple[dict[str, Any], str]:
    """Finish a login from the callback's query: (the verified ID token's claims, where to
    send the browser). Raises :class:`Unauthenticated` for anything that does not verify."""
    if params.get("error"):
        raise Unauthenticated(f"the identity provider refused the login: {params['error']}"
                              + (f" ({params['error_description']})"
                                 if params.get("error_description") else ""), hint=_RELOGIN)
    state, code = params.get("state"), params.get("code")
    if not state or not code:
        raise Unauthenticated("the login callback has no state or code", hint=_RELOGIN)
    if not browser_state or not hmac.compare_digest(state.encode(), browser_state.encode()):
        raise Unauthenticated("the login's state does not match this browser's",
                              hint=f"{_RELOGIN}, in the same browser")
    found = store.select(LoginRecord, id=_digest(state))
    if not found:
        raise Unauthenticated("the login's state is not known (already used, or never "
                              "begun here)", hint=_RELOGIN)
    login = found[0]
    store.delete(LoginRecord, id=login.id)  # one use
    if login.expires_at <= time.time():
        raise Unauthenticated("the login took too long (over ten minutes)", hint=_RELOGIN)
    meta = provider.metadata()
    try:
        with _client(provider.config, redirect_uri) as client:
            token = client.fetch_token(meta["token_endpoint"], code=code,
                                       code_verifier=login.verifier)
    except Exception as e:  # noqa: BLE001 - Authlib and httpx raise several kinds
        raise Unauthenticated(f"the identity provider did not exchange the code ({e})",
                              hint=_RELOGIN) from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise Unauthenticated("the identity provider sent no ID token",
                              hint="make sure the client may use the 'openid' scope")
    return verify_id_token(provider, id_token, nonce=login.nonce), login.next


def verify_id_token(provider: Provider, id_token: str, *, nonce: str) -> dict[str, Any]:
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jws import extract_compact

    cfg = provider.config
    algs = [a for a in provider.metadata().get("id_token_signing_alg_values_supported",
                                               ["RS256"]) if a != "none" and
            not a.startswith("HS")] or ["RS256"]
    try:
        header = extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError) as e:
        raise Unauthenticated(f"the ID token is malformed ({e})", hint=_RELOGIN) from None
    try:
        tok = jwt.decode(id_token, provider.keys(header.get("kid")), algorithms=algs)
        claims = dict(tok.claims)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY, iss={"essential": True, "value": cfg.issuer},
            aud={"essential": True, "value": cfg.client_id}, exp={"essential": True},
            sub={"essential": True}, nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError) as e:
        raise Unauthenticated(f"the ID token does not verify ({e})", hint=_RELOGIN) from None
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != cfg.client_id:
        raise Unauthenticated("the ID token was issued to another party (azp)",
                              hint=_RELOGIN)
    return claims


def map_user(config: OIDCConfig, store: Store, claims: dict[str, Any]
             ) -> tuple[UserRecord, UserRecord | None]:
    """The insitu user for these claims: (the user, the user created now if any)."""
    from insitu.server._domain import check_name

    claim = config.user_claim
    value = claims.get(claim)
    who = f"{claim} {value!r} from {config.issuer}"
    if not isinstance(value, str) or not value:
        raise PermissionDenied(f"the ID token has no {claim!r} claim",
                               hint="start the server with another --oidc-user-claim, or "
                                    "ask the provider to release that claim")
    if claim == "email" and claims.get("email_verified") is False:
        raise PermissionDenied(f"the provider has not verified the email {value!r}",
                               hint="verify the address with the identity provider")
    users = [u for u in store.select(UserRecord)
             if (u.email == value if claim == "email" else u.name == value)]
    if users:
        if users[0].service:
            raise PermissionDenied(f"{users[0].name} is a service account; it cannot log in",
                                   hint="service accounts use API tokens")
        return users[0], None
    if not config.auto_provision:
        raise PermissionDenied(
            f"no insitu user for {who}",
            hint="ask an administrator to create one (POST /api/v1/users with "
                 + ('"email"' if claim == "email" else 'that "name"')
                 + "), or start the server with --oidc-auto-provision")
    name = value.split("@", 1)[0].lower() if claim == "email" else value
    name = re.sub(r"[^a-z0-9._-]", "-", name.lower()).strip("-._")[:63] or "user"
    check_name("user", name)
    if store.select(UserRecord, name=name):
        raise PermissionDenied(f"the user name {name!r} for {who} is taken by another user",
                               hint="ask an administrator to create your user with your "
                                    "email, then log in again")
    user = UserRecord(name=name, created_at=time.time(), admin=False, service=False,
                      email=value if claim == "email" else None)
    return user, user
