"""prov17: VMs' bios type (oVirt's bios.type: machine type and SeaBIOS or OVMF firmware)

Revision ID: 0028_prov17
Revises: 0027_iscsisnap
Create Date: 2026-12-01 07:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0028_prov17'
down_revision = '0027_iscsisnap'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bios_type', sa.String(length=32),
                                      server_default='i440fx_sea_bios', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('bios_type')
