"""Inbound v2: each event's confidence and the therapist's review of a low-confidence one;
per-domain sending pauses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outreach.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as table:
        table.add_column(
            sa.Column("confidence", sa.String(8), nullable=False, server_default="high")
        )
        table.add_column(sa.Column("review", sa.String(16)))
        table.add_column(sa.Column("decided_as", sa.String(32)))
        table.add_column(sa.Column("decided_by", sa.String(200)))
        table.add_column(sa.Column("decided_at", UTCDateTime()))
    op.create_index("ix_inbound_events_review", "inbound_events", ["review"])
    op.create_table(
        "domain_pauses",
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=False),
        sa.Column("last_policy_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_domain_pauses_last_policy_at", "domain_pauses", ["last_policy_at"])


def downgrade() -> None:
    op.drop_table("domain_pauses")
    op.drop_index("ix_inbound_events_review", "inbound_events")
    with op.batch_alter_table("inbound_events") as table:
        for name in ("decided_at", "decided_by", "decided_as", "review", "confidence"):
            table.drop_column(name)
