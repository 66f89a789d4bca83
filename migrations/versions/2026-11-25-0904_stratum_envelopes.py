"""one sealed envelope per stratum instead of one row per slot

A million-slot list is then a thousand sealed rows rather than a million: generation,
sealing and storage take seconds. The per-slot layout was never released, so there is no
data to carry over; the upgrade refuses to run over randomization lists it would drop.

Revision ID: 2ca2023310bb
Revises: 298b98307904
Create Date: 2026-11-25 09:06:41.596825+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '2ca2023310bb'
down_revision: str | None = '298b98307904'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in ("stratum", "allocation"):
        if bind.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar():
            raise RuntimeError(f"{table} holds rows: the per-slot list layout cannot be converted")
    with op.batch_alter_table('allocation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stratum_id', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('sequence', sa.Integer(), nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_allocation_slot_id'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_allocation_list_id_randomization_number'), ['list_id', 'randomization_number'])
        batch_op.create_unique_constraint(batch_op.f('uq_allocation_stratum_id_sequence'), ['stratum_id', 'sequence'])
        batch_op.drop_constraint(batch_op.f('fk_allocation_slot_id_slot'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_allocation_stratum_id_stratum'), 'stratum', ['stratum_id'], ['id'])
        batch_op.drop_column('slot_id')

    with op.batch_alter_table('slot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slot_list_id'))

    op.drop_table('slot')

    with op.batch_alter_table('stratum', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slots_sealed', sa.LargeBinary(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('stratum', schema=None) as batch_op:
        batch_op.drop_column('slots_sealed')

    op.create_table('slot',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('list_id', sa.INTEGER(), nullable=False),
    sa.Column('stratum_id', sa.INTEGER(), nullable=False),
    sa.Column('sequence', sa.INTEGER(), nullable=False),
    sa.Column('randomization_number', sa.INTEGER(), nullable=False),
    sa.Column('payload_sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['randomization_list.id'], name=op.f('fk_slot_list_id_randomization_list')),
    sa.ForeignKeyConstraint(['stratum_id'], ['stratum.id'], name=op.f('fk_slot_stratum_id_stratum')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot')),
    sa.UniqueConstraint('list_id', 'randomization_number', name=op.f('uq_slot_list_id_randomization_number')),
    sa.UniqueConstraint('stratum_id', 'sequence', name=op.f('uq_slot_stratum_id_sequence'))
    )
    with op.batch_alter_table('slot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slot_list_id'), ['list_id'], unique=False)

    with op.batch_alter_table('allocation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slot_id', sa.INTEGER(), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_allocation_stratum_id_stratum'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_allocation_slot_id_slot'), 'slot', ['slot_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('uq_allocation_stratum_id_sequence'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_allocation_list_id_randomization_number'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_allocation_slot_id'), ['slot_id'])
        batch_op.drop_column('sequence')
        batch_op.drop_column('stratum_id')
