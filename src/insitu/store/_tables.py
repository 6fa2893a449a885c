"""The relational schema (SQLAlchemy Core). Change it only together with a new migration
under ``migrations/versions``."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

VERSION_TABLE = "insitu_alembic_version"

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False, index=True),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("no_cache", sa.Boolean, nullable=False, default=False),
    sa.Column("backend", sa.String(40), nullable=False),
    sa.Column("engine_pid", sa.Integer),
    sa.Column("engine_host", sa.String(200)),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.JSON),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("project", sa.String(100), nullable=False, server_default="default"),
    # a run the server's supervisor gives to an engine, and the lease of that engine: only
    # ``Store.claim_run`` writes the lease (record writes leave these two columns alone)
    sa.Column("supervised", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_until", sa.Float),
    sa.Index("ix_runs_project_created", "project", "created_at", "id"),
    sa.Index("ix_runs_supervised_state", "supervised", "state"),
)

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(300), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("map_index", sa.Integer),
    sa.Column("map_size", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("cache_key", sa.String(80)),
    sa.Column("output", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("resources", sa.JSON),
    sa.Column("node", sa.String(200)),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("not_before", sa.Float),
    sa.Column("ready_at", sa.Float),
    sa.Column("pending_reason", sa.Text),
    sa.Column("cached_from", sa.String(400)),
    sa.Column("retries_from", sa.Integer, nullable=False, server_default="0"),
)

attempts = sa.Table(
    "attempts", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("node", sa.String(200)),
    sa.Column("pid", sa.Integer),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("peak_memory", sa.BigInteger),
    sa.Column("cpu_time", sa.Float),
    sa.Column("error", sa.JSON),
    sa.Column("placement", sa.JSON),
    sa.Column("limits", sa.JSON),
)

cache = sa.Table(
    "cache", metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("output", sa.JSON, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(300), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
)

params = sa.Table(
    "params", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON),
)

logged_artifacts = sa.Table(
    "logged_artifacts", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("output", sa.JSON, nullable=False),
)

models = sa.Table(  # a model's name is unique within its project
    "models", metadata,
    sa.Column("project", sa.String(100), primary_key=True, server_default="default",
              index=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
)

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("project", sa.String(100), primary_key=True, server_default="default"),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("task_id", sa.String(300), nullable=False),
    sa.Column("output", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("lineage", sa.JSON, nullable=False),
    sa.Column("flavor", sa.String(40), nullable=False, server_default=""),
)

aliases = sa.Table(
    "aliases", metadata,
    sa.Column("project", sa.String(100), primary_key=True, server_default="default"),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

trials = sa.Table(
    "trials", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.String(300), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("intermediate", sa.JSON, nullable=False),
)

datasets = sa.Table(
    "datasets", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("project", sa.String(100), nullable=False, server_default="default",
              index=True),
)

shards = sa.Table(
    "shards", metadata,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("shard", sa.String(300), primary_key=True),
    sa.Column("index", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("replicas", sa.JSON, nullable=False),
)

data_reads = sa.Table(
    "data_reads", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("shard", sa.String(500), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("local", sa.Boolean, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("via", sa.String(20), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
)

# -- a shared server: projects, users, roles, tokens, the audit log -------------------

projects = sa.Table(
    "projects", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("service", sa.Boolean, nullable=False),
    sa.Column("email", sa.String(300)),
)

members = sa.Table(
    "members", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("user", sa.String(100), primary_key=True, index=True),
    sa.Column("role", sa.String(20), nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(100), nullable=False, index=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("project", sa.String(100)),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(100), nullable=False, index=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("client", sa.String(100)),
)

logins = sa.Table(
    "logins", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(100), nullable=False),
    sa.Column("verifier", sa.String(200), nullable=False),
    sa.Column("next", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("user", sa.String(100), index=True),
    sa.Column("token", sa.String(40)),
    sa.Column("project", sa.String(100), index=True),
    sa.Column("object", sa.Text),
    sa.Column("client", sa.String(100)),
    sa.Column("detail", sa.JSON, nullable=False),
)

# -- quotas and the claims on them (see engine/_quota.py) ------------------------------

quotas = sa.Table(
    "quotas", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("quota", sa.JSON, nullable=False),
    sa.Column("cohort", sa.String(100), index=True),
    sa.Column("borrowing_limit", sa.JSON, nullable=False),
    sa.Column("lending_limit", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(100)),
)

claims = sa.Table(
    "claims", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(300), primary_key=True),
    sa.Column("project", sa.String(100), nullable=False, index=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("cpu", sa.BigInteger, nullable=False),
    sa.Column("memory", sa.BigInteger, nullable=False),
    sa.Column("gpu", sa.BigInteger, nullable=False),
    sa.Column("gpu_type", sa.String(100)),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("restartable", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("by", sa.String(400)),
)

# -- schedules: a pipeline on a cron, and its ticks (the key is the idempotency key) --------

schedules = sa.Table(
    "schedules", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("start_at", sa.Float, nullable=False),
    sa.Column("package", sa.String(80)),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("catchup", sa.String(20), nullable=False),
    sa.Column("max_concurrent", sa.Integer, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(100)),
)

ticks = sa.Table(
    "ticks", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("schedule", sa.String(100), primary_key=True),
    sa.Column("at", sa.Float, primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("by", sa.String(300), nullable=False),
)

# -- endpoints: models served by the server (desired, and what the server sees) -----------

endpoints = sa.Table(
    "endpoints", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("model", sa.String(300), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(100)),
    sa.Column("generation", sa.Integer, nullable=False),
)

endpoint_status = sa.Table(
    "endpoint_status", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("node", sa.String(200)),
    sa.Column("placement", sa.JSON, nullable=False),
    sa.Column("pid", sa.Integer),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("by", sa.String(300), nullable=False),
)

# -- code packages: the files a submitted run carries (see server/_packages.py) -----------

packages = sa.Table(
    "packages", metadata,
    sa.Column("digest", sa.String(80), primary_key=True),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


# -- notebooks: JupyterLab servers the platform server runs ---------------------------------

notebooks = sa.Table(
    "notebooks", metadata,
    sa.Column("project", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("cpu", sa.Float, nullable=False),
    sa.Column("memory", sa.BigInteger, nullable=False),
    sa.Column("gpu", sa.Float, nullable=False),
    sa.Column("near", sa.String(200)),
    sa.Column("idle_s", sa.Float, nullable=False),
    sa.Column("placement", sa.JSON),
    sa.Column("sock", sa.Text),
    sa.Column("secret", sa.String(100)),
    sa.Column("pid", sa.Integer),
    sa.Column("reason", sa.Text),
    sa.Column("oom", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("active_at", sa.Float),
    sa.Column("created_by", sa.String(100)),
    sa.Column("detail", sa.JSON, nullable=False),
)
