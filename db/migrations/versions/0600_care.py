"""care: risk levels need 32 characters ("slightly_elevated" is FINDRISC's second band)

Revision ID: 0600_care
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0600_care"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("risk_assessments") as batch:
        batch.alter_column("level", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("risk_assessments") as batch:
        batch.alter_column("level", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=True)
