"""notify: SNMP managers, event subscriptions, notifier cursor

Revision ID: 0018_notify
Revises: 0017_affinity
Create Date: 2026-11-30 21:41:56.897918
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0018_notify'
down_revision = '0017_affinity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notifier_cursor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_event_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('snmp_managers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=8), nullable=False),
    sa.Column('community_sealed', sa.Text(), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('auth_sealed', sa.Text(), nullable=False),
    sa.Column('priv_sealed', sa.Text(), nullable=False),
    sa.Column('engine_id', sa.String(length=80), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('event_subscriptions',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('event', sa.String(length=128), nullable=False),
    sa.Column('notification_method', sa.String(length=8), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'event')
    )


def downgrade() -> None:
    op.drop_table('event_subscriptions')
    op.drop_table('snmp_managers')
    op.drop_table('notifier_cursor')
