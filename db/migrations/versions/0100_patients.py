"""patients: prefix-search indexes (varchar_pattern_ops on PostgreSQL) for card, phone, ID number, name, initials

Revision ID: 0100_patients
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0100_patients"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_patients_card_no_pattern", "card_no"),
    ("ix_patients_phone_pattern", "phone"),
    ("ix_patients_id_number_pattern", "id_number"),
    ("ix_patients_name_pattern", "name"),
    ("ix_patients_initials_pattern", "name_initials"),
)


def upgrade() -> None:
    for name, column in _INDEXES:
        op.create_index(name, "patients", [column], postgresql_ops={column: "varchar_pattern_ops"})


def downgrade() -> None:
    for name, _column in _INDEXES:
        op.drop_index(name, table_name="patients")
