"""Which server a command talks to, with which token and project.

Stored by ``insitu login`` in ``INSITU_HOME/credentials.toml`` (default
``~/.insitu/credentials.toml``), written with mode 0600 (readable by its owner only).
``INSITU_SERVER`` and ``INSITU_TOKEN`` override the file; ``INSITU_PROJECT`` (or the
``--project`` option) overrides its project. The token is never printed.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from insitu._config import load_config
from insitu.errors import UserError

DEFAULT_PROJECT = "default"
FILE_NAME = "credentials.toml"

_project: list[str] = []  # set by the command line's --project for this process


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A server, a token for it, the project commands act on, and where they came from
    (named in messages: ``INSITU_TOKEN``, or the credentials file)."""

    server: str
    token: str
    project: str = DEFAULT_PROJECT
    source: str = ""         # where the token came from
    server_source: str = ""  # where the server URL came from

    def __repr__(self) -> str:  # never show the token
        return f"Credentials(server={self.server!r}, project={self.project!r}, " \
               f"source={self.source!r})"


def credentials_path(home: str | os.PathLike[str] | None = None) -> Path:
    """Where ``insitu login`` keeps the server and token for this INSITU_HOME."""
    return load_config(home).home / FILE_NAME


def project_override(name: str | None) -> None:
    """Use project ``name`` in this process (the command line's ``--project``)."""
    _project.clear()
    if name:
        _project.append(name)


def normalise_url(url: str) -> str:
    """``url`` as stored: with a scheme, without a trailing slash or ``/api/v1``."""
    u = url.strip()
    if not u:
        raise UserError("the server URL is empty", hint="e.g. insitu login http://HOST:8420")
    if "://" not in u:
        u = "http://" + u
    scheme = u.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise UserError(f"server URL {url!r} is not http or https",
                        hint="e.g. insitu login https://insitu.example.com")
    u = u.rstrip("/")
    if u.endswith("/api/v1"):
        u = u[: -len("/api/v1")]
    return u


def _read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return {}  # not logged in (an INSITU_HOME that is no folder is the store's to say)
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a credentials file",
                        hint="remove it, then log in again (insitu login URL)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path} ({e})",
                        hint="check the file's owner and permissions, or log in again "
                             "(insitu login URL)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML ({e})",
                        hint="log in again (insitu login URL) or delete that file") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def resolve(home: str | os.PathLike[str] | None = None) -> Credentials | None:
    """The server to use, or None to work locally."""
    env_server = os.environ.get("INSITU_SERVER")
    if env_server is not None and not env_server.strip():
        return None  # set and empty: local, even when logged in
    path = credentials_path(home)
    stored = _read(path)
    project = (_project[0] if _project else None) or os.environ.get("INSITU_PROJECT") \
        or stored.get("project") or DEFAULT_PROJECT
    env_token = os.environ.get("INSITU_TOKEN")
    if env_server:
        server = normalise_url(env_server)
        if env_token:
            return Credentials(server=server, token=env_token.strip(), project=project,
                               source="INSITU_TOKEN", server_source="INSITU_SERVER")
        if stored.get("token") and stored.get("server") == server:
            return Credentials(server=server, token=stored["token"], project=project,
                               source=str(path), server_source="INSITU_SERVER")
        raise UserError(f"INSITU_SERVER is set ({server}) but there is no token for it",
                        hint=f"set INSITU_TOKEN, or log in: insitu login {server}")
    if not stored.get("server"):
        return None
    if env_token:
        return Credentials(server=stored["server"], token=env_token.strip(), project=project,
                           source="INSITU_TOKEN", server_source=str(path))
    if not stored.get("token"):
        raise UserError(f"{path} names server {stored['server']} but holds no token",
                        hint=f"log in again: insitu login {stored['server']}")
    return Credentials(server=stored["server"], token=stored["token"], project=project,
                       source=str(path), server_source=str(path))


def remember(creds: Credentials, home: str | os.PathLike[str] | None = None) -> Path:
    """Write ``creds`` to the credentials file (mode 0600, replaced atomically)."""
    path = credentials_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in
                   (("server", creds.server), ("token", creds.token),
                    ("project", creds.project)))
    text = "# insitu login: the server this INSITU_HOME uses (keep this file private)\n" + body
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def forget(home: str | os.PathLike[str] | None = None) -> str | None:
    """Remove the credentials file; return the server it named (None if there was none)."""
    path = credentials_path(home)
    server = _read(path).get("server")
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return server or "?"
