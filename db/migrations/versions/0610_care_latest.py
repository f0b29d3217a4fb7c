"""care: observation_latest (newest value per patient and indicator) and derived_state (its watermark)

The table starts empty; services.latest_values builds it on first use and keeps it current.

Revision ID: 0610_care_latest
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0610_care_latest"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "observation_latest",
        sa.Column("patient_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("indicator_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("observed_at", sa.DateTime(), nullable=False),
        sa.Column("observation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "indicator_id", name=op.f("pk_observation_latest")),
    )
    op.create_index("ix_observation_latest_indicator_value", "observation_latest", ["indicator_id", "value"])
    op.create_table(
        "derived_state",
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("watermark", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("max_observed_at", sa.DateTime(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_derived_state")),
    )


def downgrade() -> None:
    op.drop_table("derived_state")
    op.drop_index("ix_observation_latest_indicator_value", table_name="observation_latest")
    op.drop_table("observation_latest")
