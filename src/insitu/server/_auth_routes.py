"""``/api/v1/auth``: browser login through OIDC or by trading an API token for a session
(the dashboard's login form), and logout.

The routes exist on every server (so the route table does not depend on options); without
``--oidc-issuer`` login and callback answer 404 saying so. Their access rules are in
``_access.ACCESS`` like every route's (login and callback public, logout any caller).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from insitu.errors import NotFound, UserError
from insitu.server import _domain as D
from insitu.server import _oidc
from insitu.server import _sessions as S
from insitu.server._access import API
from insitu.server._routes import authorize
from insitu.store import SessionRecord, Store, UserRecord

SESSION_HOURS = 12.0  # a session made from a token lasts as long as an OIDC one by default
auth_router = APIRouter(prefix=f"{API}/auth", dependencies=[Depends(authorize)])


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _provider(request: Request) -> _oidc.Provider:
    provider: _oidc.Provider | None = getattr(request.app.state, "oidc", None)
    if provider is None:
        raise NotFound("this server has no OIDC login",
                       hint="start it with --oidc-issuer URL --oidc-client-id ID, or use an "
                            "API token")
    return provider


def _redirect_uri(request: Request, provider: _oidc.Provider) -> str:
    return provider.config.redirect_url or str(request.url_for("auth_callback"))


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@auth_router.get("/login", status_code=302, response_class=RedirectResponse)
def auth_login(request: Request, next: str | None = Query(default=None, max_length=2000)  # noqa: A002
               ) -> RedirectResponse:
    """Send the browser to the identity provider (authorization code flow with PKCE)."""
    provider = _provider(request)
    redirect_uri = _redirect_uri(request, provider)
    url, state = _oidc.begin(provider, _store(request), redirect_uri=redirect_uri,
                             next_url=next)
    resp = RedirectResponse(url, status_code=302)
    resp.set_cookie(_oidc.LOGIN_COOKIE, state, max_age=int(_oidc.LOGIN_SECONDS),
                    **{**S.cookie_options(redirect_uri.startswith("https://")),
                       "path": f"{API}/auth"})
    return resp


@auth_router.get("/callback", status_code=302, response_class=RedirectResponse)
def auth_callback(request: Request) -> RedirectResponse:
    """Where the provider sends the browser back: verify, map to a user, start a session."""
    provider = _provider(request)
    store = _store(request)
    redirect_uri = _redirect_uri(request, provider)
    params = {k: v for k, v in request.query_params.items()}
    claims, next_url = _oidc.finish(provider, store, params=params,
                                    browser_state=request.cookies.get(_oidc.LOGIN_COOKIE),
                                    redirect_uri=redirect_uri)
    user, created = _oidc.map_user(provider.config, store, claims)
    ses, cookie = S.mint(user.name, hours=provider.config.session_hours,
                         client=_client(request))
    records: list[Any] = [ses]
    if created is not None:
        records += [created, D.audit(None, "user.create", obj=f"user/{user.name}",
                                     client=_client(request),
                                     detail={"via": "oidc", "issuer": provider.config.issuer})]
    records.append(D.audit(None, "session.login", obj=f"user/{user.name}",
                           client=_client(request),
                           detail={"session": S.PREFIX + ses.id, "sub": claims.get("sub"),
                                   "issuer": provider.config.issuer}))
    store.put(*records)
    for old in S.ended_long_ago(store, user.name):
        store.delete(SessionRecord, id=old.id)
    secure = redirect_uri.startswith("https://")
    resp = RedirectResponse(next_url, status_code=302)
    max_age = int(provider.config.session_hours * 3600)
    resp.set_cookie(S.COOKIE, cookie, max_age=max_age, **S.cookie_options(secure))
    resp.set_cookie(S.CSRF_COOKIE, S.csrf_value(cookie), max_age=max_age,
                    **{**S.cookie_options(secure), "httponly": False})
    resp.delete_cookie(_oidc.LOGIN_COOKIE, path=f"{API}/auth")
    return resp


@auth_router.post("/session", status_code=204)
def auth_session(request: Request) -> Response:
    """Trade the API token of the request (``Authorization: Bearer``) for a browser login
    session: the dashboard's login form, and ``insitu ui``'s per-start token. Refused for
    a token limited to one project (a session is not) and for a service account."""
    who = request.state.principal
    store = _store(request)
    if who.token.startswith(S.PREFIX):
        raise UserError("this request already comes from a login session",
                        hint="send an API token in the Authorization header")
    if who.scope is not None:
        raise UserError(f"token {who.token} is limited to project {who.scope!r}; a login "
                        "session is not", hint="log in with a token that is not limited to "
                                               "a project")
    users = store.select(UserRecord, name=who.user)
    if not users or users[0].service:
        raise UserError(f"{who.user} is a service account, which does not log in",
                        hint="log in with a person's token")
    ses, cookie = S.mint(who.user, hours=SESSION_HOURS, client=_client(request))
    store.put(ses, D.audit(who, "session.login", obj=f"user/{who.user}",
                           client=_client(request),
                           detail={"session": S.PREFIX + ses.id, "via": "token"}))
    secure = request.url.scheme == "https"
    resp = Response(status_code=204)
    max_age = int(SESSION_HOURS * 3600)
    resp.set_cookie(S.COOKIE, cookie, max_age=max_age, **S.cookie_options(secure))
    resp.set_cookie(S.CSRF_COOKIE, S.csrf_value(cookie), max_age=max_age,
                    **{**S.cookie_options(secure), "httponly": False})
    return resp


@auth_router.post("/logout", status_code=204)
def auth_logout(request: Request) -> Response:
    """End the browser's login session (a request with an API token changes nothing)."""
    who = request.state.principal
    resp = Response(status_code=204)
    if who.token.startswith(S.PREFIX):
        store = _store(request)
        sid = who.token[len(S.PREFIX):]
        found = store.select(SessionRecord, id=sid)
        if found:
            from dataclasses import replace

            store.put(replace(found[0], revoked_at=time.time()),
                      D.audit(who, "session.logout", obj=f"session/{who.token}",
                              client=_client(request)))
        resp.delete_cookie(S.COOKIE, path="/")
        resp.delete_cookie(S.CSRF_COOKIE, path="/")
    return resp
