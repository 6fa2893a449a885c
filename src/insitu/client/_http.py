"""The HTTP client of ``/api/v1``: one place where answers become values and problem
documents (RFC 9457) become insitu's own errors, carrying the server's message and fix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from insitu.client._credentials import Credentials, resolve
from insitu.errors import (
    Conflict,
    InsituError,
    InternalError,
    NotFound,
    PermissionDenied,
    StoreError,
    Unauthenticated,
    UserError,
)

API = "/api/v1"


class Unreachable(UserError):
    """The server cannot be reached (refused, no such host, timed out, connection dropped)."""


def _need_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise UserError("talking to an insitu server needs httpx",
                        hint='pip install "httpx>=0.27"') from None
    return httpx


class Client:
    """Calls to one server with one token, in one project (``.project``)."""

    def __init__(self, creds: Credentials, *, timeout: float = 60.0) -> None:
        httpx = _need_httpx()
        self.creds = creds
        self.server = creds.server
        self.project = creds.project
        self._http = httpx.Client(
            base_url=creds.server, timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"Authorization": f"Bearer {creds.token}",
                     "User-Agent": "insitu-cli"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"<Client {self.server} project {self.project}>"

    # -- paths --------------------------------------------------------------------------

    def in_project(self, *parts: str) -> str:
        """The API path ``/api/v1/projects/PROJECT/PART/...`` (each part URL-quoted)."""
        tail = "".join("/" + quote(p, safe="") for p in parts)
        return f"{API}/projects/{quote(self.project, safe='')}{tail}"

    # -- calls --------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """The answer to ``method path`` (an httpx.Response), raising the problem it
        carries as an insitu error."""
        httpx = _need_httpx()
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise self._transport_error(e) from None
        if resp.status_code >= 400:
            raise self.problem_error(resp)
        return resp

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_params(params)).json()

    def post(self, path: str, body: Any = None) -> Any:
        resp = self.request("POST", path, json=body)
        return resp.json() if resp.content else None

    def put(self, path: str, body: Any = None) -> Any:
        resp = self.request("PUT", path, json=body)
        return resp.json() if resp.content else None

    def patch(self, path: str, body: Any = None) -> Any:
        resp = self.request("PATCH", path, json=body)
        return resp.json() if resp.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def events(self, path: str, **params: Any) -> Iterator[tuple[str, Any]]:
        """Server-sent events from ``path``: (event, data parsed as JSON) as they come."""
        httpx = _need_httpx()
        timeout = httpx.Timeout(None, connect=10.0)  # a quiet step sends nothing for a while
        try:
            with self._http.stream("GET", path, params=_params(params), timeout=timeout,
                                   headers={"Accept": "text/event-stream"}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise self.problem_error(resp)
                event, data = "message", list[str]()
                for line in resp.iter_lines():
                    if not line:  # a blank line ends an event
                        if data:
                            text = "\n".join(data)
                            try:
                                value: Any = json.loads(text)
                            except ValueError:
                                value = text
                            yield event, value
                        event, data = "message", []
                    elif line.startswith(":"):
                        continue  # a comment: the server keeping the connection open
                    else:
                        name, _, value_text = line.partition(":")
                        value_text = value_text[1:] if value_text.startswith(" ") \
                            else value_text
                        if name == "event":
                            event = value_text
                        elif name == "data":
                            data.append(value_text)
        except httpx.TransportError as e:
            raise self._transport_error(e) from None

    # -- errors -------------------------------------------------------------------------

    def _transport_error(self, e: Exception) -> UserError:
        httpx = _need_httpx()
        where = f"it came from {self.creds.server_source}" if self.creds.server_source \
            else "check it"
        if isinstance(e, httpx.ReadTimeout):
            return Unreachable(f"the insitu server at {self.server} did not answer in time",
                               hint="try again; if it keeps happening, check the server's "
                                    "log")
        reason = str(e).strip() or type(e).__name__
        if isinstance(e, httpx.RemoteProtocolError):
            reason = f"the connection was closed: {reason}"
        return Unreachable(f"cannot reach the insitu server at {self.server} ({reason})",
                           hint=f"check that `insitu server` runs there and that the URL is "
                                f"right ({where}); `insitu logout` works locally again")

    def problem_error(self, resp: Any) -> InsituError:
        """The insitu error for an error answer: its problem document's ``detail`` as the
        message and ``hint`` as the fix, exactly as the API gave them."""
        status = resp.status_code
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "detail" not in doc:
            text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
            return UserError(f"the server at {self.server} answered {status} "
                             f"{resp.reason_phrase} to {resp.request.method} "
                             f"{resp.request.url.path}" + (f": {text}" if text else ""),
                             hint="check the URL: is it an insitu server of a version that "
                                  "has this route?")
        detail = str(doc.get("detail"))
        hint = doc.get("hint")
        hint = str(hint) if hint else None
        if status == 401:
            src = self.creds.source
            origin = "from INSITU_TOKEN" if src == "INSITU_TOKEN" else \
                f"from insitu login, kept in {src}" if src.endswith(".toml") else src
            return Unauthenticated(
                f"the server at {self.server} refused the token ({origin}): {detail}",
                hint=f"log in again with a valid token: insitu login {self.server}"
                     + (" (or set INSITU_TOKEN to one)" if src == "INSITU_TOKEN" else ""))
        cls: type[InsituError] = {403: PermissionDenied, 404: NotFound, 409: Conflict,
                                  503: StoreError}.get(status, UserError)
        if status >= 500 and status != 503:
            cls = InternalError
        return cls(detail, hint=hint)


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def connect(home: str | os.PathLike[str] | None = None) -> Client | None:
    """A client of the configured server, or None when none is configured (work locally)."""
    creds = resolve(home)
    return Client(creds) if creds is not None else None
