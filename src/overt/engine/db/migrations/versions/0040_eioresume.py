"""eioresume: what the engine does with a VM paused by a storage I/O error (oVirt's
storage_error_resume_behaviour) and why its node says a paused VM is paused

Revision ID: 0040_eioresume
Revises: 0039_iscsiimport
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0040_eioresume'
down_revision = '0039_iscsiimport'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storage_error_resume_behaviour', sa.String(length=16),
                                      nullable=False, server_default='auto_resume'))
        batch_op.add_column(sa.Column('paused_reason', sa.Text(), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('paused_reason')
        batch_op.drop_column('storage_error_resume_behaviour')
