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
class SessionRecord:
    """A browser login (OIDC): the cookie holds ``<id>.<secret>``; only the secret's SHA-256
    digest is stored."""

    id: str
    user: str
    digest: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    client: str | None = None


@dataclass(frozen=True, kw_only=True)
class LoginRecord:
    """A login begun and not finished: keyed by the SHA-256 of its ``state``, it keeps the
    nonce and PKCE verifier until the identity provider sends the browser back."""

    id: str                    # sha256 of the state, hex
    nonce: str
    verifier: str
    next: str
    created_at: float
    expires_at: float


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
class QuotaRecord:
    """A project's quota: amounts per resource (``cpu`` cores, ``memory`` bytes, ``gpu``
    GPUs of any type, fractions allowed, ``gpu:<TYPE>`` GPUs of one type); a resource left
    out is not limited. Projects of one ``cohort`` lend each other unused quota, within each
    one's ``lending_limit`` and ``borrowing_limit`` (same keys; left out: unlimited)."""

    project: str
    quota: dict[str, float]
    cohort: str | None = None
    borrowing_limit: dict[str, float] = field(default_factory=dict)
    lending_limit: dict[str, float] = field(default_factory=dict)
    updated_at: float = 0.0
    updated_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class ClaimRecord:
    """A ready task's claim on its project's quota, shared by every engine through the
    database: ``waiting`` (with the ``reason``), ``admitted`` (it may start, and counts
    against the quota until its attempt ends) or ``evicted`` (its engine stops it: the
    capacity it borrowed is reclaimed). Amounts are milli-cores, bytes and milli-GPUs."""

    run_id: str
    task_id: str
    project: str
    state: str
    created_at: float
    cpu: int = 0
    memory: int = 0
    gpu: int = 0
    gpu_type: str | None = None
    priority: int = 0
    restartable: bool = False
    reason: str | None = None
    by: str | None = None       # evicted: the claim (run/task of another project) it made room for


@dataclass(frozen=True, kw_only=True)
class PackageRecord:
    """A run's code, as submitted: a zip of the user's files, named by its content."""

    digest: str                # "sha256:<hex>" of ``data``
    project: str               # the project it was first uploaded to
    size: int                  # bytes of ``data``
    files: list[str]           # member paths, relative to the package root
    created_at: float
    data: bytes = b""
