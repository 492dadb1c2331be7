"""p17bios: templates' bios type (oVirt's Template.bios), which VMs made from them inherit

Revision ID: 0032_p17bios
Revises: 0031_nodepxe
Create Date: 2026-12-02 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0032_p17bios'
down_revision = '0031_nodepxe'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bios_type', sa.String(length=32),
                                      server_default='i440fx_sea_bios', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('bios_type')
