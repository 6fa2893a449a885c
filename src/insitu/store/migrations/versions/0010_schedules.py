"""Schedules, and their ticks keyed by (project, schedule, time): a tick is written once.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
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
    op.create_table(
        "ticks",
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


def downgrade() -> None:
    op.drop_table("ticks")
    op.drop_table("schedules")
