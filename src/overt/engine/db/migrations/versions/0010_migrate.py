"""live migration: a migrating VM's destination host (vms.migration_host_id)

Revision ID: 0010_migrate
Revises: 0009_fence
Create Date: 2026-11-30 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_migrate'
down_revision = '0009_fence'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('migration_host_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key('fk_vms_migration_host_id_hosts', 'hosts',
                                    ['migration_host_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_constraint('fk_vms_migration_host_id_hosts', type_='foreignkey')
        batch_op.drop_column('migration_host_id')
