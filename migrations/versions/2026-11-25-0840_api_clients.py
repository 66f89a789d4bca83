"""api clients, grants and the token throttle

Revision ID: 366092c616f8
Revises: 0b7b6407982a
Create Date: 2026-11-25 08:40:48.886577+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '366092c616f8'
down_revision: str | None = '0b7b6407982a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_client',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('all_studies', sa.Boolean(), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('secret_version', sa.Integer(), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_client')),
    sa.UniqueConstraint('client_id', name=op.f('uq_api_client_client_id')),
    sa.UniqueConstraint('name', name=op.f('uq_api_client_name'))
    )
    op.create_table('auth_throttle',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failure_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_auth_throttle'))
    )
    op.create_table('api_client_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_pk', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['client_pk'], ['api_client.id'], name=op.f('fk_api_client_grant_client_pk_api_client')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_api_client_grant_site_id_site')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_api_client_grant_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_client_grant')),
    sa.UniqueConstraint('client_pk', 'study_id', 'site_id', name=op.f('uq_api_client_grant_client_pk_study_id_site_id'))
    )
    with op.batch_alter_table('api_client_grant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_client_grant_client_pk'), ['client_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('api_client_grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_client_grant_client_pk'))

    op.drop_table('api_client_grant')
    op.drop_table('auth_throttle')
    op.drop_table('api_client')
