"""Records of a shared server: projects, users, their roles, API tokens and the audit log.

Immutable values like every record (see ``_records.py``). A token's secret is never stored:
only its SHA-256 digest is (``TokenRecord.digest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("viewer", "editor", "owner")   # each role can do what the ones before it can


@dataclass(frozen=True, kw_only=True)
class ProjectRecord:
    name: str
    created_at: float
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class UserRecord:
    name: str
    created_at: float
    admin: bool = False        # a server administrator: every project, users, the audit log
    service: bool = False      # a service account: a user without a login, only tokens
    email: str | None = None


@dataclass(frozen=True, kw_only=True)
class MemberRecord:
    project: str
    user: str
    role: str                  # one of ROLES


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    id: str                    # public part of the token, shown in lists and the audit log
    user: str
    digest: str                # sha256 of the secret part, hex
    created_at: float
    name: str = ""
    project: str | None = None  # scoped to one project, or None for all of the user's
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    id: str                    # sortable: time, then a random suffix
    at: float
    action: str                # e.g. "project.create", "member.set", "run.cancel"
    outcome: str               # "ok", "denied" or "error"
    user: str | None = None
    token: str | None = None
    project: str | None = None
    object: str | None = None
    client: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PackageRecord:
    """A run's code, as submitted: a zip of the user's files, named by its content."""

    digest: str                # "sha256:<hex>" of ``data``
    project: str               # the project it was first uploaded to
    size: int                  # bytes of ``data``
    files: list[str]           # member paths, relative to the package root
    created_at: float
    data: bytes = b""
