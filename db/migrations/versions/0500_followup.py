"""followup: followup_daily (+ followup_daily_department) completion rollups, its watermark (followup_rollup_state) and an index on due_date

Revision ID: 0500_followup
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0500_followup"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "followup_daily",
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("on_time_0", sa.Integer(), nullable=False),
        sa.Column("on_time_1", sa.Integer(), nullable=False),
        sa.Column("on_time_2", sa.Integer(), nullable=False),
        sa.Column("on_time_3", sa.Integer(), nullable=False),
        sa.Column("on_time_4", sa.Integer(), nullable=False),
        sa.Column("on_time_5", sa.Integer(), nullable=False),
        sa.Column("on_time_6", sa.Integer(), nullable=False),
        sa.Column("on_time_7", sa.Integer(), nullable=False),
        sa.Column("on_time_8", sa.Integer(), nullable=False),
        sa.Column("on_time_9", sa.Integer(), nullable=False),
        sa.Column("on_time_10", sa.Integer(), nullable=False),
        sa.Column("on_time_11", sa.Integer(), nullable=False),
        sa.Column("on_time_12", sa.Integer(), nullable=False),
        sa.Column("on_time_13", sa.Integer(), nullable=False),
        sa.Column("on_time_14", sa.Integer(), nullable=False),
        sa.Column("on_time_15", sa.Integer(), nullable=False),
        sa.Column("on_time_16", sa.Integer(), nullable=False),
        sa.Column("on_time_17", sa.Integer(), nullable=False),
        sa.Column("on_time_18", sa.Integer(), nullable=False),
        sa.Column("on_time_19", sa.Integer(), nullable=False),
        sa.Column("on_time_20", sa.Integer(), nullable=False),
        sa.Column("on_time_21", sa.Integer(), nullable=False),
        sa.Column("on_time_22", sa.Integer(), nullable=False),
        sa.Column("on_time_23", sa.Integer(), nullable=False),
        sa.Column("on_time_24", sa.Integer(), nullable=False),
        sa.Column("on_time_25", sa.Integer(), nullable=False),
        sa.Column("on_time_26", sa.Integer(), nullable=False),
        sa.Column("on_time_27", sa.Integer(), nullable=False),
        sa.Column("on_time_28", sa.Integer(), nullable=False),
        sa.Column("on_time_29", sa.Integer(), nullable=False),
        sa.Column("on_time_30", sa.Integer(), nullable=False),
        sa.Column("attempted", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("due_date", "department_id", "assignee_id", "plan_id", "kind",
                                name=op.f("pk_followup_daily")),
    )
    op.create_table(
        "followup_daily_department",
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("on_time_0", sa.Integer(), nullable=False),
        sa.Column("on_time_1", sa.Integer(), nullable=False),
        sa.Column("on_time_2", sa.Integer(), nullable=False),
        sa.Column("on_time_3", sa.Integer(), nullable=False),
        sa.Column("on_time_4", sa.Integer(), nullable=False),
        sa.Column("on_time_5", sa.Integer(), nullable=False),
        sa.Column("on_time_6", sa.Integer(), nullable=False),
        sa.Column("on_time_7", sa.Integer(), nullable=False),
        sa.Column("on_time_8", sa.Integer(), nullable=False),
        sa.Column("on_time_9", sa.Integer(), nullable=False),
        sa.Column("on_time_10", sa.Integer(), nullable=False),
        sa.Column("on_time_11", sa.Integer(), nullable=False),
        sa.Column("on_time_12", sa.Integer(), nullable=False),
        sa.Column("on_time_13", sa.Integer(), nullable=False),
        sa.Column("on_time_14", sa.Integer(), nullable=False),
        sa.Column("on_time_15", sa.Integer(), nullable=False),
        sa.Column("on_time_16", sa.Integer(), nullable=False),
        sa.Column("on_time_17", sa.Integer(), nullable=False),
        sa.Column("on_time_18", sa.Integer(), nullable=False),
        sa.Column("on_time_19", sa.Integer(), nullable=False),
        sa.Column("on_time_20", sa.Integer(), nullable=False),
        sa.Column("on_time_21", sa.Integer(), nullable=False),
        sa.Column("on_time_22", sa.Integer(), nullable=False),
        sa.Column("on_time_23", sa.Integer(), nullable=False),
        sa.Column("on_time_24", sa.Integer(), nullable=False),
        sa.Column("on_time_25", sa.Integer(), nullable=False),
        sa.Column("on_time_26", sa.Integer(), nullable=False),
        sa.Column("on_time_27", sa.Integer(), nullable=False),
        sa.Column("on_time_28", sa.Integer(), nullable=False),
        sa.Column("on_time_29", sa.Integer(), nullable=False),
        sa.Column("on_time_30", sa.Integer(), nullable=False),
        sa.Column("attempted", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("due_date", "department_id", name=op.f("pk_followup_daily_department")),
    )
    op.create_table(
        "followup_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("max_task_id", BIG_ID, nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followup_rollup_state")),
    )
    # No state row yet: every task is read live from followup_tasks until the first rebuild.
    with op.batch_alter_table("followup_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_followup_tasks_due", ["due_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("followup_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_followup_tasks_due")
    op.drop_table("followup_rollup_state")
    op.drop_table("followup_daily_department")
    op.drop_table("followup_daily")
