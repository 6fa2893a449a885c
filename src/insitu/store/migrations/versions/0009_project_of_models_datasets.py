"""Models and datasets belong to a project (those made before: "default").

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("models", "datasets"):
        with op.batch_alter_table(table) as b:
            b.add_column(sa.Column("project", sa.String(100), nullable=False,
                                   server_default="default"))
            b.create_index(f"ix_{table}_project", ["project"])


def downgrade() -> None:
    for table in ("models", "datasets"):
        with op.batch_alter_table(table) as b:
            b.drop_index(f"ix_{table}_project")
            b.drop_column("project")
