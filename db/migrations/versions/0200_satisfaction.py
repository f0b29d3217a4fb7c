"""satisfaction: nps_daily rollup and its watermark (nps_rollup_state)

Revision ID: 0200_satisfaction
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0200_satisfaction"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "nps_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("promoters", sa.Integer(), nullable=False),
        sa.Column("passives", sa.Integer(), nullable=False),
        sa.Column("detractors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "department_id", "channel", name=op.f("pk_nps_daily")),
    )
    state = op.create_table(
        "nps_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("max_response_id", BIG_ID, nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nps_rollup_state")),
    )
    # Watermark 0: responses already in the database are read from survey_responses until the first rebuild.
    op.bulk_insert(state, [{"id": 1, "max_response_id": 0, "rebuilt_at": None}])


def downgrade() -> None:
    op.drop_table("nps_rollup_state")
    op.drop_table("nps_daily")
