"""A small OpenID Connect provider for the tests, built on Authlib's server components
(``AuthorizationServer``, ``AuthorizationCodeGrant``, ``OpenIDCode``, ``CodeChallenge``)
and served by Werkzeug on loopback, with its own RSA signing key and discovery document.

Run as a process: ``python oidc_provider.py CLIENT_ID CLIENT_SECRET REDIRECT_URI``; it
prints its issuer URL on the first line of stdout and serves until killed. People:
alice (alice@example.test), bob (bob@example.test, email not verified), carol
(carol@example.test); every password is ``pw-<name>``. ``POST /test/mode`` with
``mode=normal|wrong-aud|expired|other-key|wrong-iss`` makes the next ID tokens wrong in
that one way, for the refusal tests.
"""

from __future__ import annotations

import html
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    JsonPayload,
    JsonRequest,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

PEOPLE = {"alice": {"email": "alice@example.test", "email_verified": True},
          "bob": {"email": "bob@example.test", "email_verified": False},
          "carol": {"email": "carol@example.test", "email_verified": True}}
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
STATE: dict[str, str] = {"mode": "normal"}


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


CODES: dict[str, Code] = {}
LOCK = threading.Lock()


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        p = request.payload
        assert p is not None
        with LOCK:
            CODES[code] = Code(code=code, client_id=request.client.client_id,
                               redirect_uri=p.redirect_uri, scope=p.scope, user=request.user,
                               nonce=p.data.get("nonce"),
                               code_challenge=p.data.get("code_challenge"),
                               code_challenge_method=p.data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        with LOCK:
            c = CODES.get(code)
        return c if c is not None and c.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        with LOCK:
            CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


class IDToken(OpenIDCode):
    issuer = ""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        with LOCK:
            return any(c.nonce == nonce for c in CODES.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return OTHER_KEY if STATE["mode"] == "other-key" else KEY

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": "k1"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        mode = STATE["mode"]
        claims: dict[str, Any] = {
            "iss": self.issuer + ("/elsewhere" if mode == "wrong-iss" else ""),
            "aud": ["someone-else"] if mode == "wrong-aud" else [client.client_id],
            "iat": now, "exp": now + 300}
        if mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600, auth_time=now - 7200)
        return claims

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        info = UserInfo(sub=f"sub-{user}", preferred_username=user)
        if "email" in scope:
            info.update(PEOPLE[user])
        return info


class WerkzeugPayload(OAuth2Payload):
    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def data(self) -> Any:
        return self._request.values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {k: self._request.values.getlist(k) for k in self._request.values}


class WerkzeugOAuth2Request(OAuth2Request):
    def __init__(self, request: Request) -> None:
        super().__init__(method=request.method, uri=request.url, headers=request.headers)
        self._request = request
        self.payload = WerkzeugPayload(request)

    @property
    def args(self) -> Any:
        return self._request.args

    @property
    def form(self) -> Any:
        return self._request.form


class WerkzeugJsonPayload(JsonPayload):
    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def data(self) -> Any:
        return self._request.get_json()


class Server(AuthorizationServer):
    def __init__(self, client: Client) -> None:
        super().__init__(scopes_supported=["openid", "email", "profile"])
        self.client = client
        self.register_token_generator("default", BearerTokenGenerator(
            lambda *a, **k: secrets.token_urlsafe(32)))

    def query_client(self, client_id: str) -> Client | None:
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        pass

    def create_oauth2_request(self, request: Request) -> OAuth2Request:
        return WerkzeugOAuth2Request(request)

    def create_json_request(self, request: Request) -> JsonRequest:
        r = JsonRequest(request.method, request.url, request.headers)
        r.payload = WerkzeugJsonPayload(request)
        return r

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        return Response(body, status=status, headers=headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


def _form(request: Request, error: str = "") -> Response:
    """The provider's login page: a form posting back to the same URL."""
    action = html.escape(request.full_path)
    page = (f"<html><body><h1>Log in to the test provider</h1><p class=error>{error}</p>"
            f'<form method="post" action="{action}">'
            '<input name="username"><input name="password" type="password">'
            '<button type="submit">Log in</button></form></body></html>')
    return Response(page, status=200 if not error else 401, content_type="text/html")


def make_app(issuer: str, server: Server) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        path = request.path
        if path == "/.well-known/openid-configuration":
            doc = {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                   "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks",
                   "response_types_supported": ["code"], "subject_types_supported": ["public"],
                   "id_token_signing_alg_values_supported": ["RS256"],
                   "code_challenge_methods_supported": ["S256"],
                   "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                   "scopes_supported": ["openid", "email", "profile"]}
            resp = Response(json.dumps(doc), content_type="application/json")
        elif path == "/jwks":
            keys = {"keys": [KEY.as_dict(private=False)]}
            resp = Response(json.dumps(keys), content_type="application/json")
        elif path == "/authorize" and request.method == "GET":
            try:
                server.get_consent_grant(request)
            except Exception as e:  # noqa: BLE001 - shown to the test as the page
                resp = Response(f"bad authorization request: {e}", status=400)
            else:
                resp = _form(request)
        elif path == "/authorize" and request.method == "POST":
            user = request.form.get("username", "")
            if user not in PEOPLE or request.form.get("password") != f"pw-{user}":
                resp = _form(request, "wrong user name or password")
            else:
                resp = server.create_authorization_response(request, grant_user=user)
        elif path == "/token" and request.method == "POST":
            resp = server.create_token_response(request)
        elif path == "/test/mode" and request.method == "POST":
            STATE["mode"] = request.form["mode"]
            resp = Response("ok")
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)

    return app


def main() -> None:
    client_id, client_secret, redirect_uri = sys.argv[1:4]
    client = Client(client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri)
    srv = Server(client)
    http = make_server("127.0.0.1", 0, lambda e, s: app(e, s), threaded=True)
    issuer = f"http://127.0.0.1:{http.server_port}"
    IDToken.issuer = issuer
    srv.register_grant(CodeGrant, [CodeChallenge(required=True), IDToken(require_nonce=True)])
    app = make_app(issuer, srv)
    print(issuer, flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
