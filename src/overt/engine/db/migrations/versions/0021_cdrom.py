"""cdrom: ISO disks (disk content type), a VM's cdrom media, instance types

Revision ID: 0021_cdrom
Revises: 0020_harestart
Create Date: 2026-11-30 23:58:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables

revision = '0021_cdrom'
down_revision = '0020_harestart'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instance_types',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('cpu_sockets', sa.Integer(), nullable=False),
    sa.Column('cpu_cores', sa.Integer(), nullable=False),
    sa.Column('cpu_threads', sa.Integer(), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_type', sa.String(length=16), nullable=False,
                                      server_default='data'))
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.alter_column('content_type', server_default=None)
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('instance_type_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('cdrom_disk_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('cdrom_current_disk_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key('fk_vms_instance_type_id_instance_types', 'instance_types',
                                    ['instance_type_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key('fk_vms_cdrom_disk_id_disks', 'disks',
                                    ['cdrom_disk_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key('fk_vms_cdrom_current_disk_id_disks', 'disks',
                                    ['cdrom_current_disk_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_constraint('fk_vms_cdrom_current_disk_id_disks', type_='foreignkey')
        batch_op.drop_constraint('fk_vms_cdrom_disk_id_disks', type_='foreignkey')
        batch_op.drop_constraint('fk_vms_instance_type_id_instance_types', type_='foreignkey')
        batch_op.drop_column('cdrom_current_disk_id')
        batch_op.drop_column('cdrom_disk_id')
        batch_op.drop_column('instance_type_id')
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.drop_column('content_type')
    op.drop_table('instance_types')
