"""iscsi13: CHAP credentials of iSCSI storage connections and domains (the password
sealed by the engine's SecretBox)

Revision ID: 0030_iscsi13
Revises: 0029_feed18
Create Date: 2026-12-01 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0030_iscsi13'
down_revision = '0029_feed18'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('storage_connections') as batch:
        batch.add_column(sa.Column('username', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('password_sealed', sa.Text(), nullable=True))
    with op.batch_alter_table('storage_domains') as batch:
        batch.add_column(sa.Column('chap_username', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('chap_password_sealed', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('storage_domains') as batch:
        batch.drop_column('chap_password_sealed')
        batch.drop_column('chap_username')
    with op.batch_alter_table('storage_connections') as batch:
        batch.drop_column('password_sealed')
        batch.drop_column('username')
