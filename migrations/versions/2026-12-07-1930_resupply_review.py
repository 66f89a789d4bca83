"""The daily resupply review: one row a study a UTC date, claimed by the first run

Revision ID: 9b4d2e7f1c30
Revises: 5e0a3c8b2d17
Create Date: 2026-12-07 19:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b4d2e7f1c30"
down_revision: str | None = "5e0a3c8b2d17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resupply_review",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_resupply_review_study_id_study")
        ),
        sa.PrimaryKeyConstraint("study_id", "review_date", name=op.f("pk_resupply_review")),
    )


def downgrade() -> None:
    op.drop_table("resupply_review")
