"""Initial schema: runs, tasks, attempts, cache.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("no_cache", sa.Boolean, nullable=False),
        sa.Column("backend", sa.String(40), nullable=False),
        sa.Column("engine_pid", sa.Integer),
        sa.Column("engine_host", sa.String(200)),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error", sa.JSON),
        sa.Column("labels", sa.JSON, nullable=False),
    )
    op.create_table(
        "tasks",
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
    )
    op.create_table(
        "attempts",
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
    )
    op.create_table(
        "cache",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("output", sa.JSON, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(300), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for t in ("cache", "attempts", "tasks", "runs"):
        op.drop_table(t)
