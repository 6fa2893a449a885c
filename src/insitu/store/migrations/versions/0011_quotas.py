"""Quotas per project (with cohorts, borrowing and lending limits) and the claims of ready
tasks on them, shared by every engine.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("project", sa.String(100), primary_key=True),
        sa.Column("quota", sa.JSON, nullable=False),
        sa.Column("cohort", sa.String(100)),
        sa.Column("borrowing_limit", sa.JSON, nullable=False),
        sa.Column("lending_limit", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(100)),
    )
    op.create_index("ix_quotas_cohort", "quotas", ["cohort"])
    op.create_table(
        "claims",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(300), primary_key=True),
        sa.Column("project", sa.String(100), nullable=False),
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
    op.create_index("ix_claims_project", "claims", ["project"])


def downgrade() -> None:
    op.drop_table("claims")
    op.drop_table("quotas")
