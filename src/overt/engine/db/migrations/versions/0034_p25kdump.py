"""p25kdump: each host's kdump status as its node reports it (vdsm's kdumpStatus): enabled,
disabled or unknown (hosts enrolled before: unknown until their capabilities are read again)

Revision ID: 0034_p25kdump
Revises: 0033_kdump
Create Date: 2026-12-02 10:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0034_p25kdump'
down_revision = '0033_kdump'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kdump_status', sa.String(length=16), nullable=False,
                                      server_default='unknown'))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('kdump_status')
