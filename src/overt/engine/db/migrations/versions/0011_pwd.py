"""internal users' password policy: when a password was set, earlier hashes, lockout

Revision ID: 0011_pwd
Revises: 0010_migrate
Create Date: 2026-11-30 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overt.engine.db.tables import UtcDateTime

revision = '0011_pwd'
down_revision = '0010_migrate'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_changed_at', UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('password_history', sa.JSON(), nullable=False,
                                      server_default='[]'))
        batch_op.add_column(sa.Column('failed_signins', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('failed_since', UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('locked_until', UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_since')
        batch_op.drop_column('failed_signins')
        batch_op.drop_column('password_history')
        batch_op.drop_column('password_changed_at')
