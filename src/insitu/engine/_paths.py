"""Where an attempt's logs and result live, under ``INSITU_HOME/runs/<run>/``."""

from __future__ import annotations

from pathlib import Path

from insitu._config import Config


def _safe(task_id: str) -> str:
    return task_id.replace("/", "_")


def log_path(cfg: Config, run_id: str, task_id: str, attempt: int, stream: str) -> Path:
    return Path(f"{cfg.runs_dir}/{run_id}/logs/{_safe(task_id)}.{attempt}.{stream}")


def metrics_path(cfg: Config, run_id: str, task_id: str, attempt: int) -> Path:
    return Path(f"{cfg.runs_dir}/{run_id}/metrics/{_safe(task_id)}.{attempt}.jsonl")


def result_path(cfg: Config, run_id: str, task_id: str, attempt: int) -> Path:
    return Path(f"{cfg.runs_dir}/{run_id}/results/{_safe(task_id)}.{attempt}.json")
