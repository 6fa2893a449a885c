"""Datasets and their shards.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "shards",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("shard", sa.String(300), primary_key=True),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("replicas", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shards")
    op.drop_table("datasets")
