"""Checks that an SQLite store can be used before anything is written to it.

- the location: ``INSITU_HOME`` must be a folder and ``insitu.db`` a file;
- the content: SQLite's ``PRAGMA quick_check`` on open, so that a damaged file is refused
  before a command reads wrong answers from it or writes into it;
- the errors SQLite reports later (read-only, locked, full, damaged) become one
  :class:`~insitu.errors.StoreError` that says what happened and how to recover.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from insitu.errors import StoreError


def _recover_hint(path: str) -> str:
    return (f"recover what SQLite can read with `sqlite3 {path} .recover | sqlite3 "
            f"{path}.recovered` then `mv {path} {path}.bad && mv {path}.recovered {path}`; "
            f"or move it aside (mv {path} {path}.bad) and insitu starts a fresh one")


def check_location(db_path: Path) -> None:
    """Refuse, with the fix, a database path whose folder is a file or that is a folder."""
    for parent in [*reversed(db_path.parents)]:
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"{parent} is a file, not a folder, so insitu cannot keep its "
                             f"database {db_path} there",
                             hint=f"set INSITU_HOME to a folder (it is {parent}), or move "
                                  "that file away")
    if db_path.is_dir():
        raise StoreError(f"the database path {db_path} is a folder, not an SQLite file",
                         hint=f"move that folder away (mv {db_path} {db_path}.folder), or set "
                              "INSITU_HOME to another folder")
    if db_path.exists() and not db_path.is_file():
        raise StoreError(f"the database path {db_path} is not a regular file",
                         hint="set INSITU_HOME to another folder")


def quick_check(conn: Any, where: str) -> None:
    """Run ``PRAGMA quick_check`` on an SQLAlchemy connection; a damaged file is refused."""
    import sqlalchemy as sa

    rows = [str(r[0]) for r in conn.execute(sa.text("PRAGMA quick_check(3)"))]
    if rows != ["ok"]:
        said = [ln.strip() for r in rows for ln in r.splitlines()
                if ln.strip() and not ln.startswith("***")]
        raise StoreError(f"the database {where} is corrupted (SQLite's integrity check: "
                         f"{'; '.join(said[:2])}); insitu will not read or write it",
                         hint=_recover_hint(where))


def describe(text: str, where: str) -> StoreError:
    """An SQLite error message as a StoreError with the fix."""
    low = text.lower()
    if "readonly" in low or "read-only" in low:
        return StoreError(f"the database {where} is read-only ({text})",
                          hint=f"make {where} and its folder writable (SQLite also writes "
                               f"{os.path.basename(where)}-wal and -shm beside it), or set "
                               "INSITU_HOME to a writable folder")
    if "locked" in low or "busy" in low:
        return StoreError(f"the database {where} is locked by another process ({text})",
                          hint="wait for the other insitu command to finish, or stop it; "
                               "`insitu runs` shows what is running")
    if "disk is full" in low or "no space" in low or "database or disk is full" in low:
        return StoreError(f"the disk holding {where} is full ({text})",
                          hint="free some space on that disk, or set INSITU_HOME elsewhere")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return StoreError(f"the database {where} is corrupted ({text})",
                          hint=_recover_hint(where))
    if "unable to open" in low:
        return StoreError(f"cannot open the database {where} ({text})",
                          hint="check that its folder exists and is writable, or set "
                               "INSITU_HOME to another folder")
    if "disk i/o" in low:
        return StoreError(f"the disk failed while reading or writing {where} ({text})",
                          hint="check the disk (dmesg), then try again")
    return StoreError(f"database error on {where}: {text}",
                      hint="try again; if it persists, check the database file and its disk")


def database_error(e: BaseException) -> StoreError | None:
    """A StoreError for a database exception that escaped the store, else None."""
    import sqlite3

    orig: BaseException = e
    try:
        import sqlalchemy as sa

        if isinstance(e, sa.exc.DBAPIError) and e.orig is not None:
            orig = e.orig
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    if not isinstance(orig, sqlite3.Error):
        return None
    from insitu._config import load_config

    url = load_config().db_url
    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return describe(str(orig), where)


__all__ = ["check_location", "database_error", "describe", "quick_check"]
