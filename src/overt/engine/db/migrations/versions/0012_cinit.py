"""cloud-init: a VM's initialization (vms.initialization)

Revision ID: 0012_cinit
Revises: 0011_pwd
Create Date: 2026-11-30 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_cinit'
down_revision = '0011_pwd'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('initialization', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('initialization')
