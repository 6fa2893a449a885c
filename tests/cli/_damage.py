"""Damage an SQLite database the way a bad disk would, for the tests of a damaged store."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def damage_attempts_table(db: Path) -> None:
    """Overwrite the first page of the attempts table: a damage only an integrity check
    sees before a command reads that table."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = c.execute("PRAGMA page_size").fetchone()[0]
    root = c.execute("SELECT rootpage FROM sqlite_master WHERE name='attempts'").fetchone()[0]
    c.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xff" * size)
