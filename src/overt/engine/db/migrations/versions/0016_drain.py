"""placement policy: the hosts a VM may run on and its affinity (vms.placement_hosts,
vms.placement_affinity), replacing the single vms.placement_host_id

Revision ID: 0016_drain
Revises: 0015_snap
Create Date: 2026-11-30 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016_drain'
down_revision = '0015_snap'
branch_labels = None
depends_on = None

_vms = sa.table('vms', sa.column('id', sa.Uuid()), sa.column('placement_host_id', sa.Uuid()),
                sa.column('placement_hosts', sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placement_hosts', sa.JSON(), nullable=False,
                                      server_default='[]'))
        batch_op.add_column(sa.Column('placement_affinity', sa.String(length=16),
                                      nullable=False, server_default='migratable'))
    connection = op.get_bind()
    pinned = connection.execute(sa.select(_vms.c.id, _vms.c.placement_host_id).where(
        _vms.c.placement_host_id.is_not(None))).all()
    for vm_id, host_id in pinned:
        connection.execute(_vms.update().where(_vms.c.id == vm_id).values(
            placement_hosts=[str(host_id)]))
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.alter_column('placement_hosts', server_default=None)
        batch_op.alter_column('placement_affinity', server_default=None)
        batch_op.drop_column('placement_host_id')


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placement_host_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key('fk_vms_placement_host_id_hosts', 'hosts',
                                    ['placement_host_id'], ['id'])
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('placement_affinity')
        batch_op.drop_column('placement_hosts')
