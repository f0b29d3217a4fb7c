"""followup: partial indexes on the open tasks for the nurse worklist (per nurse and per department, in the page's
order due_date, id, with patient_id for the risk lookup)

Revision ID: 0510_worklist_index
Revises: 0500_followup
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0510_worklist_index"
down_revision = "0500_followup"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("followup_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_followup_tasks_pending_assignee", ["assignee_id", "due_date", "id", "patient_id"],
                              unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index("ix_followup_tasks_pending_department",
                              ["department_id", "due_date", "id", "patient_id"], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    with op.batch_alter_table("followup_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_followup_tasks_pending_department")
        batch_op.drop_index("ix_followup_tasks_pending_assignee")
