"""reports: topbox_daily rollup for the quality summary and its watermark (topbox_rollup_state)

Revision ID: 0700_reports_topbox
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0700_reports_topbox"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "topbox_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "department_id", "item_id", "value", name=op.f("pk_topbox_daily")),
    )
    state = op.create_table(
        "topbox_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("max_response_id", BIG_ID, nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topbox_rollup_state")),
    )
    # Watermark 0: answers already in the database are read live until the first refresh.
    op.bulk_insert(state, [{"id": 1, "max_response_id": 0, "rebuilt_at": None}])


def downgrade() -> None:
    op.drop_table("topbox_rollup_state")
    op.drop_table("topbox_daily")
