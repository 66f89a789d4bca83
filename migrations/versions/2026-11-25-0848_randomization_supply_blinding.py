"""randomization, supply and blinding

Revision ID: 298b98307904
Revises: 366092c616f8
Create Date: 2026-11-25 08:48:04.106015+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '298b98307904'
down_revision: str | None = '366092c616f8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('idempotency_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_record')),
    sa.UniqueConstraint('principal', 'key', name=op.f('uq_idempotency_record_principal_key'))
    )
    op.create_table('lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('expiry_date', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_lot_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot')),
    sa.UniqueConstraint('study_id', 'code', name=op.f('uq_lot_study_id_code'))
    )
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_study_id'), ['study_id'], unique=False)

    op.create_table('notification_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_notification_outbox_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_outbox'))
    )
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_outbox_study_id'), ['study_id'], unique=False)

    op.create_table('randomization_list',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('seed_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('generated_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_randomization_list_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_randomization_list')),
    sa.UniqueConstraint('study_id', 'mode', 'version', name=op.f('uq_randomization_list_study_id_mode_version'))
    )
    with op.batch_alter_table('randomization_list', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_randomization_list_study_id'), ['study_id'], unique=False)

    op.create_table('shipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('depot_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['depot_id'], ['depot.id'], name=op.f('fk_shipment_depot_id_depot')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_shipment_site_id_site')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_shipment_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipment')),
    sa.UniqueConstraint('study_id', 'code', name=op.f('uq_shipment_study_id_code'))
    )
    with op.batch_alter_table('shipment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shipment_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shipment_study_id'), ['study_id'], unique=False)

    op.create_table('stratum',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('levels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('next_sequence', sa.Integer(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('low_warned_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['list_id'], ['randomization_list.id'], name=op.f('fk_stratum_list_id_randomization_list')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_stratum_site_id_site')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stratum')),
    sa.UniqueConstraint('list_id', 'key', name=op.f('uq_stratum_list_id_key'))
    )
    with op.batch_alter_table('stratum', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stratum_list_id'), ['list_id'], unique=False)

    op.create_table('dispensation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject_pk', sa.Integer(), nullable=False),
    sa.Column('visit', sa.String(length=32), nullable=False),
    sa.Column('weight_kg', sa.Numeric(precision=6, scale=2), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('dispensed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispensed_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['subject_pk'], ['subject.id'], name=op.f('fk_dispensation_subject_pk_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispensation')),
    sa.UniqueConstraint('subject_pk', 'visit', name=op.f('uq_dispensation_subject_pk_visit'))
    )
    with op.batch_alter_table('dispensation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispensation_subject_pk'), ['subject_pk'], unique=False)

    op.create_table('excursion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('shipment_id', sa.Integer(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reported_by', sa.String(length=128), nullable=False),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipment.id'], name=op.f('fk_excursion_shipment_id_shipment')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_excursion_site_id_site')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_excursion_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_excursion')),
    sa.UniqueConstraint('code', name=op.f('uq_excursion_code'))
    )
    with op.batch_alter_table('excursion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_excursion_study_id'), ['study_id'], unique=False)

    op.create_table('slot',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('stratum_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('randomization_number', sa.Integer(), nullable=False),
    sa.Column('payload_sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['randomization_list.id'], name=op.f('fk_slot_list_id_randomization_list')),
    sa.ForeignKeyConstraint(['stratum_id'], ['stratum.id'], name=op.f('fk_slot_stratum_id_stratum')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot')),
    sa.UniqueConstraint('list_id', 'randomization_number', name=op.f('uq_slot_list_id_randomization_number')),
    sa.UniqueConstraint('stratum_id', 'sequence', name=op.f('uq_slot_stratum_id_sequence'))
    )
    with op.batch_alter_table('slot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slot_list_id'), ['list_id'], unique=False)

    op.create_table('unblinding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject_pk', sa.Integer(), nullable=False),
    sa.Column('unblinded_by', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('unblinded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subject_pk'], ['subject.id'], name=op.f('fk_unblinding_subject_pk_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unblinding'))
    )
    with op.batch_alter_table('unblinding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unblinding_subject_pk'), ['subject_pk'], unique=False)

    op.create_table('allocation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject_pk', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('slot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('stratum_key', sa.String(length=255), nullable=False),
    sa.Column('randomization_number', sa.Integer(), nullable=False),
    sa.Column('arm_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('trace_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('allocated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['randomization_list.id'], name=op.f('fk_allocation_list_id_randomization_list')),
    sa.ForeignKeyConstraint(['slot_id'], ['slot.id'], name=op.f('fk_allocation_slot_id_slot')),
    sa.ForeignKeyConstraint(['subject_pk'], ['subject.id'], name=op.f('fk_allocation_subject_pk_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allocation')),
    sa.UniqueConstraint('slot_id', name=op.f('uq_allocation_slot_id')),
    sa.UniqueConstraint('subject_pk', name=op.f('uq_allocation_subject_pk'))
    )
    op.create_table('kit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('kit_number', sa.String(length=16), nullable=False),
    sa.Column('kit_type_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('expiry_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('quarantined_from', sa.String(length=16), nullable=True),
    sa.Column('depot_id', sa.Integer(), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('subject_pk', sa.Integer(), nullable=True),
    sa.Column('dispensation_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['depot_id'], ['depot.id'], name=op.f('fk_kit_depot_id_depot')),
    sa.ForeignKeyConstraint(['dispensation_id'], ['dispensation.id'], name=op.f('fk_kit_dispensation_id_dispensation')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_kit_lot_id_lot')),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], name=op.f('fk_kit_site_id_site')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_kit_study_id_study')),
    sa.ForeignKeyConstraint(['subject_pk'], ['subject.id'], name=op.f('fk_kit_subject_pk_subject')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kit')),
    sa.UniqueConstraint('study_id', 'kit_number', name=op.f('uq_kit_study_id_kit_number'))
    )
    with op.batch_alter_table('kit', schema=None) as batch_op:
        batch_op.create_index('ix_kit_depot_status', ['depot_id', 'status'], unique=False)
        batch_op.create_index('ix_kit_site_status', ['site_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_kit_study_id'), ['study_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kit_subject_pk'), ['subject_pk'], unique=False)

    op.create_table('excursion_kit',
    sa.Column('excursion_id', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['excursion_id'], ['excursion.id'], name=op.f('fk_excursion_kit_excursion_id_excursion')),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], name=op.f('fk_excursion_kit_kit_id_kit')),
    sa.PrimaryKeyConstraint('excursion_id', 'kit_id', name=op.f('pk_excursion_kit'))
    )
    op.create_table('shipment_kit',
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('kit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['kit_id'], ['kit.id'], name=op.f('fk_shipment_kit_kit_id_kit')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipment.id'], name=op.f('fk_shipment_kit_shipment_id_shipment')),
    sa.PrimaryKeyConstraint('shipment_id', 'kit_id', name=op.f('pk_shipment_kit'))
    )
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', sa.String(length=8), server_default='live', nullable=False))
        batch_op.add_column(sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('locked_by', sa.String(length=128), nullable=True))

    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', sa.String(length=8), server_default='live', nullable=False))
        batch_op.add_column(sa.Column('randomization_number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('unblinded', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subject', schema=None) as batch_op:
        batch_op.drop_column('ended_at')
        batch_op.drop_column('unblinded')
        batch_op.drop_column('randomization_number')
        batch_op.drop_column('mode')

    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_column('locked_by')
        batch_op.drop_column('locked_at')
        batch_op.drop_column('mode')

    op.drop_table('shipment_kit')
    op.drop_table('excursion_kit')
    with op.batch_alter_table('kit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kit_subject_pk'))
        batch_op.drop_index(batch_op.f('ix_kit_study_id'))
        batch_op.drop_index('ix_kit_site_status')
        batch_op.drop_index('ix_kit_depot_status')

    op.drop_table('kit')
    op.drop_table('allocation')
    with op.batch_alter_table('unblinding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unblinding_subject_pk'))

    op.drop_table('unblinding')
    with op.batch_alter_table('slot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slot_list_id'))

    op.drop_table('slot')
    with op.batch_alter_table('excursion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_excursion_study_id'))

    op.drop_table('excursion')
    with op.batch_alter_table('dispensation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispensation_subject_pk'))

    op.drop_table('dispensation')
    with op.batch_alter_table('stratum', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stratum_list_id'))

    op.drop_table('stratum')
    with op.batch_alter_table('shipment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shipment_study_id'))
        batch_op.drop_index(batch_op.f('ix_shipment_site_id'))

    op.drop_table('shipment')
    with op.batch_alter_table('randomization_list', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_randomization_list_study_id'))

    op.drop_table('randomization_list')
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_outbox_study_id'))

    op.drop_table('notification_outbox')
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_study_id'))

    op.drop_table('lot')
    op.drop_table('idempotency_record')
