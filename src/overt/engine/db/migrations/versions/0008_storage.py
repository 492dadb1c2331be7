"""shared storage: the on-storage id of a storage domain

Revision ID: 0008_storage
Revises: 0007_identity
Create Date: 2026-11-30 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_storage'
down_revision = '0007_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('storage_domains', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storage_uuid', sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('storage_domains', schema=None) as batch_op:
        batch_op.drop_column('storage_uuid')
