"""A shared server: projects, users, members, tokens, the audit log; runs belong to a project.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("project", sa.String(100), nullable=False,
                               server_default="default"))
        b.create_index("ix_runs_project_created", ["project", "created_at", "id"])
    op.create_table(
        "projects",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("service", sa.Boolean, nullable=False),
        sa.Column("email", sa.String(300)),
    )
    op.create_table(
        "members",
        sa.Column("project", sa.String(100), primary_key=True),
        sa.Column("user", sa.String(100), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
    )
    op.create_index("ix_members_user", "members", ["user"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("project", sa.String(100)),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_tokens_user", "tokens", ["user"])
    op.create_table(
        "audit",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("user", sa.String(100)),
        sa.Column("token", sa.String(40)),
        sa.Column("project", sa.String(100)),
        sa.Column("object", sa.Text),
        sa.Column("client", sa.String(100)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_user", "audit", ["user"])
    op.create_index("ix_audit_project", "audit", ["project"])


def downgrade() -> None:
    for name in ("audit", "tokens", "members", "users", "projects"):
        op.drop_table(name)
    with op.batch_alter_table("runs") as b:
        b.drop_index("ix_runs_project_created")
        b.drop_column("project")
