"""iscsidisc: the iSCSI targets each host logged in to (oVirt's iscsilogin), remembered
for its LUN list

Revision ID: 0035_iscsidisc
Revises: 0034_p25kdump
Create Date: 2026-12-02 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0035_iscsidisc'
down_revision = '0034_p25kdump'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('iscsi_logins', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('iscsi_logins')
