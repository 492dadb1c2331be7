"""cloud-init on templates: a template's initialization (templates.initialization)

Revision ID: 0026_pxeguest
Revises: 0025_bondnet
Create Date: 2026-12-01 03:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0026_pxeguest'
down_revision = '0025_bondnet'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('initialization', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('initialization')
