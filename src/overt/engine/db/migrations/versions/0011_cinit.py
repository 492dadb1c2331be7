"""cloud-init: a VM's initialization (vms.initialization)

Revision ID: 0011_cinit
Revises: 0010_migrate
Create Date: 2026-11-30 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_cinit'
down_revision = '0010_migrate'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('initialization', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('initialization')
