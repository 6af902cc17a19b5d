"""Who started a run (the coordinator's login, or the Flower run's submitter), which the
baseline did not keep; runs recorded before stay without one (NULL).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("started_by", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("started_by")
