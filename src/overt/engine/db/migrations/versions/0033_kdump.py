"""kdump: hosts' kdump detection (oVirt's power_management.kdump_detection) and the last
fence_kdump message the engine's listener matched to each

Revision ID: 0033_kdump
Revises: 0032_p17bios
Create Date: 2026-12-02 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables

revision = '0033_kdump'
down_revision = '0032_p17bios'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kdump_detection', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('kdump_message_at',
                                      overt.engine.db.tables.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('kdump_sender', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('kdump_sender')
        batch_op.drop_column('kdump_message_at')
        batch_op.drop_column('kdump_detection')
