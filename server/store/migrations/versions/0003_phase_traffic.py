"""The bytes each site had sent and received when a phase finished, so the dashboard can
show them per phase; phases recorded before have none (NULL).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("phases") as phases:
        phases.add_column(sa.Column("traffic", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("phases") as phases:
        phases.drop_column("traffic")
