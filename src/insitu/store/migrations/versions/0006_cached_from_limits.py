"""A cached task names the task it was served from; an attempt records the limits it ran
under (memory limit and how it was enforced).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("cached_from", sa.String(400)))
        batch.add_column(sa.Column("retries_from", sa.Integer, nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("limits", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("limits")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("retries_from")
        batch.drop_column("cached_from")
