"""Notebook servers: what each asked for, where it runs and what it holds.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notebooks",
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


def downgrade() -> None:
    op.drop_table("notebooks")
