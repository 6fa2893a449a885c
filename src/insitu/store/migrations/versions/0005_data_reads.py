"""Shard reads: per attempt, the bytes read locally or moved, and from where.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_reads",
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


def downgrade() -> None:
    op.drop_table("data_reads")
