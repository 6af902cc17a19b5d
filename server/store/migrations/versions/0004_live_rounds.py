"""Rounds written as each one ends, before their phase: a round names its run and belongs to
no phase until the phase ends (then the phase's rows replace it).

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("rounds") as rounds:
        rounds.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        rounds.create_foreign_key("fk_rounds_run_id_runs", "runs", ["run_id"], ["id"])
        rounds.alter_column("phase_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM rounds WHERE phase_id IS NULL")
    with op.batch_alter_table("rounds") as rounds:
        rounds.alter_column("phase_id", existing_type=sa.Integer(), nullable=False)
        rounds.drop_constraint("fk_rounds_run_id_runs", type_="foreignkey")
        rounds.drop_column("run_id")
