"""iscsirest: the CHAP user of a direct LUN disk's target and its password, sealed

Revision ID: 0036_iscsirest
Revises: 0035_iscsidisc
Create Date: 2026-12-03 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0036_iscsirest'
down_revision = '0035_iscsidisc'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lun_chap_username', sa.String(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column('lun_chap_password_sealed', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.drop_column('lun_chap_password_sealed')
        batch_op.drop_column('lun_chap_username')
