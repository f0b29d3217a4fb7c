"""care: indexes that let a tag rule preview read diagnoses, lifestyle and latest values from indexes alone

- ix_health_history_condition: condition rows by patient, with the columns a diagnosis condition reads;
- ix_health_history_lifestyle: lifestyle rows by aspect (db.models.lifestyle_aspect) and patient, with the columns
  a lifestyle condition reads; PostgreSQL also gets statistics on the aspect expression (a partial expression index
  has none of its own), so the planner knows "smoking" is one row per patient, not 0.5 % of the table;
- ix_observation_latest_indicator_value now includes patient_id and observed_at (PostgreSQL);
- lifestyle records the form saved with aspect "activity" say "exercise", the word of the demo data, the importers
  and the tag rule builder, so one rule finds both (the data step stays on downgrade: both words meant the same);
- ix_risk_assessments_model_latest: each patient's assessments of a model, newest first, with the level, so "the
  newest assessment of model M" is one ordered index read instead of a sort of every assessment.

Revision ID: 0612_care_preview_indexes
Revises: 0611_care_obs_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0612_care_preview_indexes"
down_revision = "0611_care_obs_index"
branch_labels = None
depends_on = None

READ = "code, text, started_on, ended_on, recorded_at"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    renamed = ("jsonb_set(detail::jsonb, '{aspect}', '\"exercise\"')::json" if pg
               else "json_set(detail, '$.aspect', 'exercise')")
    op.execute(f"UPDATE health_history SET detail = {renamed} "
               "WHERE kind = 'lifestyle' AND detail IS NOT NULL AND "
               + ("detail ->> 'aspect'" if pg else "json_extract(detail, '$.aspect')") + " = 'activity'")
    if pg:
        op.execute("SET LOCAL maintenance_work_mem = '1GB'")
        # The same text SQLAlchemy renders for db.models.lifestyle_aspect(), so the planner matches the index.
        aspect = "COALESCE(CAST((detail ->> 'aspect') AS VARCHAR), code)"
        op.execute(f"CREATE INDEX ix_health_history_condition ON health_history (patient_id) INCLUDE ({READ}) "
                   "WHERE kind = 'condition'")
        op.execute(f"CREATE INDEX ix_health_history_lifestyle ON health_history (({aspect}), patient_id) "
                   f"INCLUDE ({READ}, detail) WHERE kind = 'lifestyle'")
        op.execute(f"CREATE STATISTICS IF NOT EXISTS st_health_history_aspect ON ({aspect}), kind FROM health_history")
        op.execute("ANALYZE health_history")
        op.drop_index("ix_observation_latest_indicator_value", table_name="observation_latest")
        op.create_index("ix_observation_latest_indicator_value", "observation_latest", ["indicator_id", "value"],
                        postgresql_include=["patient_id", "observed_at"])
    op.create_index("ix_risk_assessments_model_latest", "risk_assessments",
                    ["model", "patient_id", sa.desc(sa.column("assessed_at")), sa.desc(sa.column("id"))],
                    postgresql_include=["level"])
    if not pg:
        aspect = "coalesce(CAST(JSON_EXTRACT(detail, '$.\"aspect\"') AS VARCHAR), code)"
        op.execute("CREATE INDEX ix_health_history_condition ON health_history (patient_id) WHERE kind = 'condition'")
        op.execute(f"CREATE INDEX ix_health_history_lifestyle ON health_history (({aspect}), patient_id) "
                   "WHERE kind = 'lifestyle'")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_risk_assessments_model_latest", table_name="risk_assessments")
    op.drop_index("ix_health_history_lifestyle", table_name="health_history")
    op.drop_index("ix_health_history_condition", table_name="health_history")
    if pg:
        op.execute("DROP STATISTICS IF EXISTS st_health_history_aspect")
        op.drop_index("ix_observation_latest_indicator_value", table_name="observation_latest")
        op.create_index("ix_observation_latest_indicator_value", "observation_latest", ["indicator_id", "value"])
