"""A run with nothing to launch (every step cached) starts no fork server, so the
pipeline's modules are imported once, by the command itself."""

from __future__ import annotations

from pathlib import Path

PIPELINE = Path(__file__).parents[1] / "pipelines" / "import_count.py"


def test_a_fully_cached_run_imports_the_pipeline_once(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    imports = tmp_path / "imports"
    env = {"INSITU_TEST_IMPORTS": str(imports)}
    first = cli("run", str(PIPELINE), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(set(imports.read_text().split())) >= 2  # the command, and the fork server
    imports.write_text("")
    again = cli("run", str(PIPELINE), env=env)
    assert again.returncode == 0 and "2 cache hits" in again.stdout, again.stdout + again.stderr
    assert len(imports.read_text().split()) == 1, "imported again by a process with no work"
