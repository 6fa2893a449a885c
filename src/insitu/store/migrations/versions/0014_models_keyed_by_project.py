"""A model's name is unique within its project, not across the server: models, their
versions and aliases are keyed by (project, name). Versions and aliases made before take
their model's project.

Revision ID: 0014
Revises: 0013
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _project() -> sa.Column[Any]:
    return sa.Column("project", sa.String(100), primary_key=True, server_default="default")


def _models(name: str, keyed: bool) -> sa.Table:
    cols: list[sa.Column[Any]] = [sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("description", sa.Text, nullable=False),
            sa.Column("tags", sa.JSON, nullable=False)]
    if keyed:
        cols.insert(0, _project())
    else:
        cols.append(sa.Column("project", sa.String(100), nullable=False,
                              server_default="default"))
    return op.create_table(name, *cols)


def _versions(name: str, keyed: bool) -> sa.Table:
    cols: list[sa.Column[Any]] = [sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("task_id", sa.String(300), nullable=False),
            sa.Column("output", sa.JSON, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("description", sa.Text, nullable=False),
            sa.Column("tags", sa.JSON, nullable=False),
            sa.Column("lineage", sa.JSON, nullable=False),
            sa.Column("flavor", sa.String(40), nullable=False, server_default="")]
    if keyed:
        cols.insert(0, _project())
    return op.create_table(name, *cols)


def _aliases(name: str, keyed: bool) -> sa.Table:
    cols: list[sa.Column[Any]] = [sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("alias", sa.String(200), primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False)]
    if keyed:
        cols.insert(0, _project())
    return op.create_table(name, *cols)


_MODEL_COLS = "name, created_at, description, tags, project"
_VERSION_COLS = ("name, version, run_id, task_id, output, created_at, description, tags, "
                 "lineage, flavor")
_ALIAS_COLS = "name, alias, version, updated_at"
_OF_MODEL = "(SELECT m.project FROM models m WHERE m.name = {t}.name)"


def upgrade() -> None:
    _models("models_v14", keyed=True)
    _versions("model_versions_v14", keyed=True)
    _aliases("aliases_v14", keyed=True)
    op.execute(f"INSERT INTO models_v14 ({_MODEL_COLS}) SELECT {_MODEL_COLS} FROM models")
    for table, cols in (("model_versions", _VERSION_COLS), ("aliases", _ALIAS_COLS)):
        op.execute(f"INSERT INTO {table}_v14 (project, {cols}) SELECT "
                   f"COALESCE({_OF_MODEL.format(t=table)}, 'default'), {cols} FROM {table}")
    for table in ("aliases", "model_versions", "models"):
        op.drop_table(table)
        op.rename_table(f"{table}_v14", table)
    op.create_index("ix_models_project", "models", ["project"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])


def downgrade() -> None:  # names must be unique across projects again for this to succeed
    _models("models_v13", keyed=False)
    _versions("model_versions_v13", keyed=False)
    _aliases("aliases_v13", keyed=False)
    op.execute(f"INSERT INTO models_v13 ({_MODEL_COLS}) SELECT {_MODEL_COLS} FROM models")
    op.execute(f"INSERT INTO model_versions_v13 ({_VERSION_COLS}) "
               f"SELECT {_VERSION_COLS} FROM model_versions")
    op.execute(f"INSERT INTO aliases_v13 ({_ALIAS_COLS}) SELECT {_ALIAS_COLS} FROM aliases")
    for table in ("aliases", "model_versions", "models"):
        op.drop_table(table)
        op.rename_table(f"{table}_v13", table)
    op.create_index("ix_models_project", "models", ["project"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
