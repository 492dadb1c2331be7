"""storconn: storage connections added on their own, and those of iSCSI domains

Revision ID: 0023_storconn
Revises: 0022_hostnet
Create Date: 2026-12-01 03:09:28.036867
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables

revision = '0023_storconn'
down_revision = '0022_hostnet'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_connections',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('target', sa.String(length=255), nullable=True),
    sa.Column('nfs_version', sa.String(length=16), nullable=True),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('storage_domain_connections',
    sa.Column('storage_domain_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['storage_connections.id'], ),
    sa.ForeignKeyConstraint(['storage_domain_id'], ['storage_domains.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('storage_domain_id', 'connection_id')
    )


def downgrade() -> None:
    op.drop_table('storage_domain_connections')
    op.drop_table('storage_connections')
