"""care: index on observations (indicator, value, time) including the patient, for the tag rules' "any" and
"at least n readings" conditions (a range of one indicator's values read from the index alone)

Revision ID: 0611_care_obs_index
Revises: 0610_care_latest
"""

from __future__ import annotations

from alembic import op

revision = "0611_care_obs_index"
down_revision = "0610_care_latest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Tens of millions of rows: sort in memory rather than in many small runs on disk.
        op.execute("SET LOCAL maintenance_work_mem = '1GB'")
    op.create_index("ix_observations_indicator_value", "observations", ["indicator_id", "value", "observed_at"],
                    postgresql_include=["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_observations_indicator_value", table_name="observations")
