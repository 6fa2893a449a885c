"""Endpoints on the server: what each should be, and what the server running it sees.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("project", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(100)),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_table(
        "endpoint_status",
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


def downgrade() -> None:
    op.drop_table("endpoint_status")
    op.drop_table("endpoints")
