"""nodepxe: hardware facts of announced hosts; provisioning profiles

Revision ID: 0031_nodepxe
Revises: 0030_iscsi13
Create Date: 2026-12-01 07:13:07.104278
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables

revision = '0031_nodepxe'
down_revision = '0030_iscsi13'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provisioning_profiles',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('mac', sa.String(length=17), nullable=True),
    sa.Column('image', sa.String(length=255), nullable=False),
    sa.Column('kernel_args', sa.Text(), nullable=False),
    sa.Column('cluster_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mac'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hardware', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('hardware')

    op.drop_table('provisioning_profiles')
