from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PIPELINES = HERE / "pipelines"

pytest_plugins = ["pg_fixture"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh INSITU_HOME for this test (a real SQLite file under tmp_path)."""
    h = tmp_path / "insitu-home"
    monkeypatch.setenv("INSITU_HOME", str(h))
    monkeypatch.delenv("INSITU_DB_URL", raising=False)
    monkeypatch.delenv("INSITU_ARTIFACTS", raising=False)
    return h


def run_cli(*args: str, home: Path, timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``insitu`` command in a subprocess."""
    e = {**os.environ, "INSITU_HOME": str(home), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "insitu", *args], capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=cwd)


@pytest.fixture
def cli(home: Path):  # type: ignore[no-untyped-def]
    def _run(*args: str, **kw):  # type: ignore[no-untyped-def]
        return run_cli(*args, home=home, **kw)

    return _run


@pytest.fixture(autouse=True)
def _no_server_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server configured in the shell that runs the tests (INSITU_SERVER, ...) is not
    used: every test works locally unless it points commands at a server itself."""
    for name in ("INSITU_SERVER", "INSITU_TOKEN", "INSITU_PROJECT"):
        monkeypatch.delenv(name, raising=False)
