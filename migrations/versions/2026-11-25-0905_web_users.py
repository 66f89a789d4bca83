"""Web users, their grants and their sessions

Revision ID: f527bf817237
Revises: 2ca2023310bb
Create Date: 2026-11-25 09:05:38.534914+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f527bf817237"
down_revision: str | None = "2ca2023310bb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("all_studies", sa.Boolean(), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("enrolment_hash", sa.String(length=255), nullable=True),
        sa.Column("enrolment_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("totp_secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("totp_kek_id", sa.String(length=64), nullable=True),
        sa.Column("totp_enrolled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_user")),
        sa.UniqueConstraint("email", name=op.f("uq_web_user_email")),
        sa.UniqueConstraint("user_id", name=op.f("uq_web_user_user_id")),
    )
    op.create_table(
        "web_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authenticated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_pk"], ["web_user.id"], name=op.f("fk_web_session_user_pk_web_user")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_session")),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_user_pk"), ["user_pk"], unique=False)

    op.create_table(
        "web_user_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_web_user_grant_site_id_site")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_web_user_grant_study_id_study")
        ),
        sa.ForeignKeyConstraint(
            ["user_pk"], ["web_user.id"], name=op.f("fk_web_user_grant_user_pk_web_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_user_grant")),
        sa.UniqueConstraint(
            "user_pk",
            "study_id",
            "site_id",
            name=op.f("uq_web_user_grant_user_pk_study_id_site_id"),
        ),
    )
    with op.batch_alter_table("web_user_grant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_user_grant_user_pk"), ["user_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_user_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_user_grant_user_pk"))

    op.drop_table("web_user_grant")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_user_pk"))

    op.drop_table("web_session")
    op.drop_table("web_user")
