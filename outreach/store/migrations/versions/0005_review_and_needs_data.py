"""The first week with real data: a contact held for the therapist's review before its first
message (``[sending] hold_new``, ``outreach approve``), and a contact that lacks a field its
templates need ("needs data": only that contact waits).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as table:
        table.add_column(sa.Column("held_since", UTCDateTime()))
        table.add_column(sa.Column("needs_data", sa.Text()))
    op.create_index("ix_contacts_held_since", "contacts", ["held_since"])


def downgrade() -> None:
    op.drop_index("ix_contacts_held_since", "contacts")
    with op.batch_alter_table("contacts") as table:
        table.drop_column("needs_data")
        table.drop_column("held_since")
