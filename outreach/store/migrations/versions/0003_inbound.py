"""Inbound events (metadata and effect, no bodies) and the watcher's per-folder UID watermark.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.models import JsonValue, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_key", sa.String(255), nullable=False, unique=True),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("sender_domain", sa.String(255), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("step_index", sa.Integer()),
        sa.Column("detail", JsonValue, nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
    )
    op.create_index("ix_inbound_events_contact_id", "inbound_events", ["contact_id"])
    op.create_table(
        "mailbox_state",
        sa.Column("folder", sa.String(255), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mailbox_state")
    op.drop_table("inbound_events")
