"""An index on kit.dispensation_id: a subject's kits were found by scanning every kit

Revision ID: 7c1f0e2d9a41
Revises: f527bf817237
Create Date: 2026-11-25 14:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1f0e2d9a41"
down_revision: str | None = "f527bf817237"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_kit_dispensation_id",
        "kit",
        ["dispensation_id"],
        postgresql_where=sa.text("dispensation_id IS NOT NULL"),
        sqlite_where=sa.text("dispensation_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_kit_dispensation_id", table_name="kit")
