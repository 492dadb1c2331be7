"""iscsisnap: extents of iSCSI domains reserved for volumes jobs are making; direct LUN
disks (a disk with no storage domain, named by its LUN)

Revision ID: 0027_iscsisnap
Revises: 0026_pxeguest
Create Date: 2026-12-01 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0027_iscsisnap'
down_revision = '0026_pxeguest'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('extent_reservations',
    sa.Column('image_path', sa.Text(), nullable=False),
    sa.Column('storage_domain_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['storage_domain_id'], ['storage_domains.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_path')
    )
    op.create_index(op.f('ix_extent_reservations_storage_domain_id'), 'extent_reservations',
                    ['storage_domain_id'], unique=False)
    with op.batch_alter_table('disks') as batch:
        batch.add_column(sa.Column('lun_portal', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('lun_path', sa.Text(), nullable=True))
        batch.alter_column('storage_domain_id', existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('disks') as batch:
        batch.alter_column('storage_domain_id', existing_type=sa.Uuid(), nullable=False)
        batch.drop_column('lun_path')
        batch.drop_column('lun_portal')
    op.drop_index(op.f('ix_extent_reservations_storage_domain_id'),
                  table_name='extent_reservations')
    op.drop_table('extent_reservations')
