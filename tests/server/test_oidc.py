"""Browser login through OpenID Connect: a real provider process (tests/server/
oidc_provider.py, Authlib's server components) and a real ``insitu server`` process, both on
loopback, driven over HTTP the way a browser would (redirects, the provider's login form,
cookies), against SQLite and PostgreSQL."""

from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import cli
from insitu.store import SessionRecord, UserRecord, open_store
from pg_fixture import databases

pytest.importorskip("authlib")
pytest.importorskip("werkzeug")

PROVIDER = Path(__file__).with_name("oidc_provider.py")
CLIENT_ID, CLIENT_SECRET = "insitu-test", "client-secret-for-the-test-provider"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    url: str
    issuer: str
    db_url: str
    admin_token: str
    procs: list[subprocess.Popen[bytes]]

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def mode(self, mode: str) -> None:
        assert httpx.post(f"{self.issuer}/test/mode", data={"mode": mode},
                          timeout=30).status_code == 200


def _start(home: Path, db_url: str, *extra: str) -> Setup:
    init = cli(home, "server", "init", "--db", db_url)
    assert init.returncode == 0, init.stderr
    token = init.stdout.strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    provider = subprocess.Popen([sys.executable, str(PROVIDER), CLIENT_ID, CLIENT_SECRET,
                                 f"{url}/api/v1/auth/callback"], stdout=subprocess.PIPE)
    assert provider.stdout is not None
    issuer = provider.stdout.readline().decode().strip()
    assert issuer.startswith("http://127.0.0.1:"), issuer
    secret_file = home / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    secret_file.chmod(0o600)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "INSITU_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "insitu", "server", "--db", db_url, "--port", str(port),
         "--oidc-issuer", issuer, "--oidc-client-id", CLIENT_ID,
         "--oidc-client-secret-file", str(secret_file), *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    setup = Setup(url=url, issuer=issuer, db_url=db_url, admin_token=token,
                  procs=[proc, provider])
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            _stop(setup)
            raise AssertionError((home / "server.log").read_text())
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                return setup
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (home / "server.log").read_text()
        time.sleep(0.1)


def _stop(s: Setup) -> None:
    for p in s.procs:
        p.terminate()
    for p in s.procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module", params=databases("sqlite"))
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("oidc-home")
    if request.param == "sqlite":
        db_url = f"sqlite:///{home / 'server.db'}"
    else:
        import secrets

        db_url = request.getfixturevalue("postgres").create_database(
            "o_" + secrets.token_hex(6))
    s = _start(home, db_url)
    a = s.admin()
    assert a.post("/api/v1/users", json={"name": "alice", "email": "alice@example.test"}
                  ).status_code == 201
    assert a.post("/api/v1/users", json={"name": "bob", "email": "bob@example.test"}
                  ).status_code == 201
    assert a.post("/api/v1/projects", json={"name": "wonder", "owner": "alice"}
                  ).status_code == 201
    try:
        yield s
    finally:
        _stop(s)


def _login(s: Setup, c: httpx.Client, user: str, *, password: str | None = None,
           tamper: Callable[[str], str] | None = None) -> httpx.Response:
    """Log in as a browser would: /auth/login -> the provider's form -> post it -> back to
    the callback (its URL changed by ``tamper`` first, when given)."""
    r = c.get(f"{s.url}/api/v1/auth/login", follow_redirects=True)
    assert r.status_code == 200 and "<form" in r.text, r.text
    assert str(r.url).startswith(f"{s.issuer}/authorize?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(str(r.url)).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    m = re.search(r'action="([^"]+)"', r.text)
    assert m is not None
    r = c.post(str(r.url.join(html.unescape(m.group(1)))),
               data={"username": user, "password": password or f"pw-{user}"},
               follow_redirects=False)
    assert r.status_code == 302, r.text
    callback = r.headers["location"]
    assert callback.startswith(f"{s.url}/api/v1/auth/callback?")
    return c.get(tamper(callback) if tamper else callback, follow_redirects=True)


def _browser() -> httpx.Client:
    return httpx.Client(timeout=60)


def test_a_person_logs_in_and_uses_the_api_with_the_cookie(setup: Setup) -> None:
    s = setup
    with _browser() as c:
        r = _login(s, c, "alice")
        assert r.status_code == 200, r.text
        assert str(r.url) == f"{s.url}/api/v1/whoami"
        me = r.json()
        assert me["user"] == "alice" and me["admin"] is False and me["scope"] is None
        assert me["token"].startswith("ses_") and me["projects"] == {"wonder": "owner"}
        cookie = c.cookies.get("insitu_session", domain="127.0.0.1")
        csrf = c.cookies.get("insitu_csrf", domain="127.0.0.1")
        assert cookie and csrf

        # the cookie's attributes, as the server set them
        login = [h for h in r.history if "callback" in str(h.url)][0]
        set_cookie = [h for h in login.headers.get_list("set-cookie")
                      if h.startswith("insitu_session=")][0].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie
        assert "secure" not in set_cookie  # plain http here; https makes it Secure
        # stored hashed: the secret part of the cookie is nowhere in the database
        store = open_store(s.db_url)
        try:
            ses = store.select(SessionRecord, id=me["token"][len("ses_"):])[0]
        finally:
            store.close()
        assert ses.user == "alice" and ses.expires_at > time.time()
        assert cookie.split(".", 1)[1] not in repr(ses)

        assert c.get(f"{s.url}/api/v1/projects/wonder/runs").status_code == 200
        # a change made with the cookie needs the CSRF header...
        r = c.post(f"{s.url}/api/v1/tokens", json={"name": "from the browser"})
        assert r.status_code == 403 and "X-Insitu-CSRF" in r.json()["detail"]
        r = c.post(f"{s.url}/api/v1/tokens", json={"name": "from the browser"},
                   headers={"X-Insitu-CSRF": "0" * 64})
        assert r.status_code == 403
        r = c.post(f"{s.url}/api/v1/tokens", json={"name": "from the browser"},
                   headers={"X-Insitu-CSRF": csrf})
        assert r.status_code == 201 and r.json()["user"] == "alice"
        # ... and an Authorization header, when given, is the only identity looked at
        r = c.get(f"{s.url}/api/v1/whoami", headers={"Authorization": "Bearer nonsense"})
        assert r.status_code == 401
        r = c.get(f"{s.url}/api/v1/whoami",
                  headers={"Authorization": f"Bearer {s.admin_token}"})
        assert r.json()["user"] == "admin"
        # a header naming a user is no identity, cookie or not
        r = httpx.get(f"{s.url}/api/v1/whoami", headers={"X-Forwarded-User": "alice"})
        assert r.status_code == 401

        # logout ends the session for good
        assert c.post(f"{s.url}/api/v1/auth/logout").status_code == 403  # no CSRF header
        assert c.post(f"{s.url}/api/v1/auth/logout",
                      headers={"X-Insitu-CSRF": csrf}).status_code == 204
        assert not c.cookies.get("insitu_session", domain="127.0.0.1")
    r = httpx.get(f"{s.url}/api/v1/whoami", cookies={"insitu_session": cookie})
    assert r.status_code == 401 and "logged out" in r.json()["detail"]
    audit = s.admin().get("/api/v1/audit", params={"user": "alice"}).json()
    actions = {a["action"] for a in (audit["items"] if isinstance(audit, dict) else audit)}
    assert {"session.logout"} <= actions


def _refused(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert text in r.json()["detail"], r.json()
    assert r.json()["hint"]


def test_a_callback_with_another_state_is_refused(setup: Setup) -> None:
    def other_state(url: str) -> str:
        return re.sub(r"state=[^&]+", "state=forged-state-value", url)

    with _browser() as c:
        r = _login(setup, c, "alice", tamper=other_state)
        _refused(r, 401, "state does not match")
        assert not c.cookies.get("insitu_session", domain="127.0.0.1")


def test_a_callback_is_good_once_and_only_in_its_browser(setup: Setup) -> None:
    seen: list[str] = []
    with _browser() as c:
        r = _login(setup, c, "alice", tamper=lambda u: seen.append(u) or u)
        assert r.status_code == 200
    with _browser() as other:  # the same callback URL, in a browser that did not begin it
        _refused(other.get(seen[0]), 401, "does not match this browser's")
    # the same browser again: the state was used up by the first callback
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(seen[0]).query)["state"][0]
    with _browser() as c:
        c.cookies.set("insitu_login", state, domain="127.0.0.1", path="/api/v1/auth")
        _refused(c.get(seen[0]), 401, "not known")


@pytest.mark.parametrize(("mode", "why"), [("wrong-aud", "aud"), ("expired", "expired"),
                                          ("other-key", "signature"), ("wrong-iss", "iss")])
def test_an_id_token_that_does_not_verify_is_refused(setup: Setup, mode: str,
                                                     why: str) -> None:
    setup.mode(mode)
    try:
        with _browser() as c:
            r = _login(setup, c, "alice")
            _refused(r, 401, "the ID token does not verify")
            assert why in r.json()["detail"].lower()
            assert not c.cookies.get("insitu_session", domain="127.0.0.1")
    finally:
        setup.mode("normal")


def test_unknown_and_unverified_people_are_refused(setup: Setup) -> None:
    with _browser() as c:
        r = _login(setup, c, "carol")  # a person the provider knows, insitu does not
        _refused(r, 403, "no insitu user for email 'carol@example.test'")
        assert "--oidc-auto-provision" in r.json()["hint"]
        r = _login(setup, c, "bob")    # a user, but the provider has not verified the email
        _refused(r, 403, "has not verified the email")
        assert not c.cookies.get("insitu_session", domain="127.0.0.1")
    store = open_store(setup.db_url)
    try:
        assert not store.select(UserRecord, name="carol")
    finally:
        store.close()


def test_auto_provisioned_people_are_plain_users(tmp_path: Path) -> None:
    s = _start(tmp_path, f"sqlite:///{tmp_path / 'server.db'}", "--oidc-auto-provision")
    try:
        with _browser() as c:
            r = _login(s, c, "carol")
            assert r.status_code == 200, r.text
            me = r.json()
            assert me["user"] == "carol" and me["admin"] is False and me["projects"] == {}
            assert c.get(f"{s.url}/api/v1/users").status_code == 403
            assert c.get(f"{s.url}/api/v1/audit").status_code == 403
        users = {u["name"]: u for u in s.admin().get("/api/v1/users").json()}
        assert users["carol"]["admin"] is False
        assert users["carol"]["email"] == "carol@example.test"
    finally:
        _stop(s)


def test_a_server_without_oidc_says_so(server) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{server.url}/api/v1/auth/login", timeout=30)
    _refused(r, 404, "this server has no OIDC login")
    assert "--oidc-issuer" in r.json()["hint"]


def test_oidc_options_are_checked_before_serving(tmp_path: Path) -> None:
    r = cli(tmp_path, "server", "--oidc-client-id", "x")
    assert r.returncode != 0 and "need --oidc-issuer" in r.stderr + r.stdout
    r = cli(tmp_path, "server", "--oidc-issuer", "https://id.example")
    assert r.returncode != 0 and "needs --oidc-client-id" in r.stderr + r.stdout
    r = cli(tmp_path, "server", "--oidc-issuer", "http://id.example", "--oidc-client-id", "x")
    assert r.returncode != 0 and "not an https URL" in r.stderr + r.stdout
    (tmp_path / "secret.bin").write_bytes(b"\xff\xfe\x00")
    for path in (tmp_path / "secret.bin", tmp_path / "missing"):
        r = cli(tmp_path, "server", "--oidc-issuer", "https://id.example", "--oidc-client-id",
                "x", "--oidc-client-secret-file", str(path))
        assert r.returncode != 0 and "cannot read the OIDC client secret file" in r.stderr
        assert "Traceback" not in r.stderr


def test_expired_malformed_and_unknown_sessions_are_refused(setup: Setup) -> None:
    from dataclasses import replace

    from insitu.server import _sessions

    store = open_store(setup.db_url)
    try:
        ses, cookie = _sessions.mint("alice", hours=1, client=None)
        store.put(replace(ses, expires_at=time.time() - 1))
    finally:
        store.close()
    for value, why in ((cookie, "expired"), ("not-a-session", "malformed"),
                       (cookie.split(".")[0] + ".wrong-secret", "not known"),
                       ("000000000000.x", "not known")):
        r = httpx.get(f"{setup.url}/api/v1/whoami", cookies={"insitu_session": value},
                      timeout=30)
        _refused(r, 401, why)


def test_login_sends_the_browser_back_only_to_this_server() -> None:
    from insitu.server._oidc import safe_next

    assert safe_next("/api/v1/projects?x=1") == "/api/v1/projects?x=1"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x",
                "/a\r\nSet-Cookie: x=y", None, ""):
        assert safe_next(bad) == "/api/v1/whoami", bad


def test_a_login_clears_that_persons_sessions_ended_long_ago(setup: Setup) -> None:
    from dataclasses import replace

    from insitu.server import _sessions

    now = time.time()
    old, _ = _sessions.mint("alice", hours=1, client=None, now=now - 9 * 86400)
    recent, _ = _sessions.mint("alice", hours=1, client=None, now=now - 7200)
    logged_out, _ = _sessions.mint("alice", hours=999, client=None, now=now - 9 * 86400)
    store = open_store(setup.db_url)
    try:
        store.put(old, recent, replace(logged_out, revoked_at=now - 8 * 86400))
    finally:
        store.close()
    with _browser() as c:
        assert _login(setup, c, "alice").status_code == 200
    store = open_store(setup.db_url)
    try:
        ids = {ses.id for ses in store.select(SessionRecord, user="alice")}
    finally:
        store.close()
    assert recent.id in ids  # ended lately: still refused by name ("expired")
    assert old.id not in ids and logged_out.id not in ids
