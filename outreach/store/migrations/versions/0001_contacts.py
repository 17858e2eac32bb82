"""Contacts, their stage history, and referrals.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.models import JsonValue, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False, unique=True),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("title", sa.String(200)),
        sa.Column("organization", sa.String(300)),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("timezone", sa.String(64)),
        sa.Column("tags", JsonValue, nullable=False),
        sa.Column("custom", JsonValue, nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("paused_until", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_contacts_segment", "contacts", ["segment"])
    op.create_index("ix_contacts_stage", "contacts", ["stage"])
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_stage", sa.String(64)),
        sa.Column("to_stage", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_stage_changes_contact_at", "stage_changes", ["contact_id", "at"])
    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_referrals_contact_id", "referrals", ["contact_id"])


def downgrade() -> None:
    op.drop_table("referrals")
    op.drop_table("stage_changes")
    op.drop_table("contacts")
