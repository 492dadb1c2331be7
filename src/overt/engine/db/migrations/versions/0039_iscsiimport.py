"""iscsiimport: the metadata area lines of an imported iSCSI domain's volumes that its
import did not adopt (storage_domains.kept_volumes), so their extents stay taken

Revision ID: 0039_iscsiimport
Revises: 0038_memfollow
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0039_iscsiimport'
down_revision = '0038_memfollow'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('storage_domains', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kept_volumes', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('storage_domains', schema=None) as batch_op:
        batch_op.drop_column('kept_volumes')
