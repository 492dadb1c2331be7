"""feed18: the change log (rows written by triggers on VMs, hosts, jobs, steps and audit
events) that the portal's change feed reads instead of whole tables

Revision ID: 0029_feed18
Revises: 0028_prov17
Create Date: 2026-12-01 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overt.engine.db import change_log

revision = '0029_feed18'
down_revision = '0028_prov17'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('change_log',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('xid', sa.BigInteger(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'),
              nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sqlite_autoincrement=True,
    )
    op.create_index(op.f('ix_change_log_xid'), 'change_log', ['xid'], unique=False)
    op.create_index(op.f('ix_change_log_at'), 'change_log', ['at'], unique=False)
    change_log.install(op.get_bind())


def downgrade() -> None:
    change_log.uninstall(op.get_bind())
    op.drop_index(op.f('ix_change_log_at'), table_name='change_log')
    op.drop_index(op.f('ix_change_log_xid'), table_name='change_log')
    op.drop_table('change_log')
