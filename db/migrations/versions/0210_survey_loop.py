"""survey loop: invitations per encounter, the re-rating response of a recovery case, saved import mappings

Revision ID: 0210_survey_loop
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0210_survey_loop"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("encounter_id", BIG_ID, nullable=True))
        batch_op.create_foreign_key(op.f("fk_survey_invitations_encounter_id_encounters"), "encounters",
                                    ["encounter_id"], ["id"])
        batch_op.create_index("ix_survey_invitations_encounter_id", ["encounter_id"], unique=True)
        batch_op.create_index("ix_survey_invitations_patient_sent", ["patient_id", "sent_at"], unique=False)
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.create_index("ix_survey_responses_invitation", ["invitation_id"], unique=False)
    with op.batch_alter_table("service_recovery_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerating_response_id", BIG_ID, nullable=True))
        batch_op.create_foreign_key(op.f("fk_service_recovery_cases_rerating_response_id_survey_responses"),
                                    "survey_responses", ["rerating_response_id"], ["id"])
    op.create_table(
        "import_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_import_mappings_updated_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_mappings")),
        sa.UniqueConstraint("format", "name", name=op.f("uq_import_mappings_format_name")),
    )


def downgrade() -> None:
    op.drop_table("import_mappings")
    with op.batch_alter_table("service_recovery_cases", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_service_recovery_cases_rerating_response_id_survey_responses"),
                                 type_="foreignkey")
        batch_op.drop_column("rerating_response_id")
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_responses_invitation")
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_invitations_patient_sent")
        batch_op.drop_index("ix_survey_invitations_encounter_id")
        batch_op.drop_constraint(op.f("fk_survey_invitations_encounter_id_encounters"), type_="foreignkey")
        batch_op.drop_column("encounter_id")
