"""A model version records its flavour (the framework of the object: sklearn, pytorch, ...),
from which serving chooses the runtime.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("flavor", sa.String(40), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("flavor")
