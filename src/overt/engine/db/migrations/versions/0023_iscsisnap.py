"""iscsisnap: extents of iSCSI domains reserved for volumes jobs are making

Revision ID: 0023_iscsisnap
Revises: 0022_hostnet
Create Date: 2026-12-01 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023_iscsisnap'
down_revision = '0022_hostnet'
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


def downgrade() -> None:
    op.drop_index(op.f('ix_extent_reservations_storage_domain_id'),
                  table_name='extent_reservations')
    op.drop_table('extent_reservations')
