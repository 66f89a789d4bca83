"""A trial's life at the site: subject end reasons, screen failure and re-screening, stratum
corrections, eligibility answers, missed and held visits, enrolment closed at a site, and
enrolment caps

Revision ID: 3f6a1d9c4e52
Revises: 9b4d2e7f1c30
Create Date: 2026-12-07 22:15:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3f6a1d9c4e52"
down_revision: str | None = "9b4d2e7f1c30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("subject") as batch:
        batch.add_column(sa.Column("end_reason", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("rescreen_of", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("strata_corrected", JSON_DOC, nullable=True))
        batch.add_column(sa.Column("eligibility", JSON_DOC, nullable=True))
        batch.create_foreign_key(
            op.f("fk_subject_rescreen_of_subject"), "subject", ["rescreen_of"], ["id"]
        )
    with op.batch_alter_table("site") as batch:
        batch.add_column(
            sa.Column("enrolment_open", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table(
        "visit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_pk", sa.Integer(), nullable=False),
        sa.Column("visit", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_pk"], ["subject.id"], name=op.f("fk_visit_event_subject_pk_subject")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_event")),
        sa.UniqueConstraint("subject_pk", "visit", name=op.f("uq_visit_event_subject_pk_visit")),
    )
    op.create_index(op.f("ix_visit_event_subject_pk"), "visit_event", ["subject_pk"], unique=False)
    op.create_table(
        "enrolment_cap",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("warning_at", sa.Integer(), nullable=True),
        sa.Column("cap", sa.Integer(), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_enrolment_cap_study_id_study")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_cap")),
        sa.UniqueConstraint(
            "study_id", "scope", "target", name=op.f("uq_enrolment_cap_study_id_scope_target")
        ),
    )
    op.create_index(op.f("ix_enrolment_cap_study_id"), "enrolment_cap", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_enrolment_cap_study_id"), table_name="enrolment_cap")
    op.drop_table("enrolment_cap")
    op.drop_index(op.f("ix_visit_event_subject_pk"), table_name="visit_event")
    op.drop_table("visit_event")
    with op.batch_alter_table("site") as batch:
        batch.drop_column("enrolment_open")
    with op.batch_alter_table("subject") as batch:
        batch.drop_constraint(op.f("fk_subject_rescreen_of_subject"), type_="foreignkey")
        batch.drop_column("eligibility")
        batch.drop_column("strata_corrected")
        batch.drop_column("rescreen_of")
        batch.drop_column("end_reason")
