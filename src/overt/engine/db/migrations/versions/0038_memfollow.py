"""memfollow: room in disks.content_type for oVirt's memory content types
(`memory_metadata_volume`, 22 characters), given to a snapshot's memory volumes that a
domain's import adopts as disks

Revision ID: 0038_memfollow
Revises: 0037_memsnap
Create Date: 2026-12-03 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0038_memfollow'
down_revision = '0037_memsnap'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.alter_column('content_type', existing_type=sa.String(length=16),
                              type_=sa.String(length=32), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.alter_column('content_type', existing_type=sa.String(length=32),
                              type_=sa.String(length=16), existing_nullable=False)
