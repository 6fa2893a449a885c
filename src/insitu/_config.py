"""Where insitu keeps its state: ``INSITU_HOME`` (default ``~/.insitu``).

- ``INSITU_HOME/insitu.db``: the metadata store (SQLite, WAL), unless ``INSITU_DB_URL`` is set.
- ``INSITU_HOME/artifacts``: the artifact store, unless ``INSITU_ARTIFACTS`` (any fsspec URL).
- ``INSITU_HOME/runs/<run>/``: logs and attempt results of each run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Config:
    home: Path
    db_url: str
    artifacts_url: str

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def load_config(home: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration from the environment (explicit ``home`` wins)."""
    h = Path(home or os.environ.get("INSITU_HOME") or Path.home() / ".insitu").expanduser()
    h = h.absolute()
    db = os.environ.get("INSITU_DB_URL") or f"sqlite:///{h / 'insitu.db'}"
    art = os.environ.get("INSITU_ARTIFACTS") or str(h / "artifacts")
    return Config(home=h, db_url=db, artifacts_url=art)
