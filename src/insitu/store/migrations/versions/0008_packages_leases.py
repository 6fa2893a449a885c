"""Runs a server supervises: code packages, and a lease per run so one engine drives it.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("supervised", sa.Boolean, nullable=False,
                               server_default=sa.false()))
        b.add_column(sa.Column("lease_owner", sa.String(200)))
        b.add_column(sa.Column("lease_until", sa.Float))
        b.create_index("ix_runs_supervised_state", ["supervised", "state"])
    op.create_table(
        "packages",
        sa.Column("digest", sa.String(80), primary_key=True),
        sa.Column("project", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("packages")
    with op.batch_alter_table("runs") as b:
        b.drop_index("ix_runs_supervised_state")
        b.drop_column("lease_until")
        b.drop_column("lease_owner")
        b.drop_column("supervised")
