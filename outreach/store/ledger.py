"""The delivery ledger's shared pieces: row states, the per-message statements, suppression.

The statements that run once per message are built once, so SQLAlchemy reuses their compiled
form instead of rebuilding and re-keying them for every send.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain.pipeline import CONTACTED, EXIT_STAGES, NEW
from outreach.domain.sequencing import ACTIVE_STAGES, REPLY_STEP_BASE
from outreach.store.models import ContactRow, OutboxRow, StageChangeRow, SuppressionRow, UTCDateTime

SENDING_PAUSED = "sending_paused"
WAITING = ("retry", "queued")

# A sequence step goes to contacts in new/contacted; a rule's reply (reply_with) to any
# contact that has not left (unsubscribed, bounced, do_not_contact).
STAGE_ALLOWS_ROW = or_(
    ContactRow.stage.in_(ACTIVE_STAGES),
    and_(OutboxRow.step_index >= REPLY_STEP_BASE, ContactRow.stage.not_in(EXIT_STAGES)),
)

# The statements that run once per message, built once: SQLAlchemy then reuses their
# compiled form instead of rebuilding and re-keying them for every send.
NOW = bindparam("now", type_=UTCDateTime())
START = (
    update(OutboxRow)
    .where(
        OutboxRow.id == bindparam("oid"),
        OutboxRow.state.in_(WAITING),
        exists(
            select(ContactRow.id).where(
                ContactRow.id == OutboxRow.contact_id,
                STAGE_ALLOWS_ROW,
                or_(ContactRow.paused_until.is_(None), ContactRow.paused_until <= NOW),
                ~exists(
                    select(SuppressionRow.id).where(
                        SuppressionRow.email_key == ContactRow.email_key
                    )
                ),
            )
        ),
    )
    .values(state="sending", attempts=OutboxRow.attempts + 1, updated_at=NOW)
)
MARK_SENT = (
    update(OutboxRow)
    .where(OutboxRow.id == bindparam("oid"))
    .values(state="sent", sent_at=NOW, next_attempt_at=None, updated_at=NOW)
)
CHECK_AGAIN = (  # the next step is computed on the next pass
    update(ContactRow).where(ContactRow.id == bindparam("cid")).values(next_check_at=NOW)
)
FIRST_CONTACT = (
    update(ContactRow)
    .where(ContactRow.id == bindparam("cid"), ContactRow.stage == NEW)
    .values(stage=CONTACTED, updated_at=NOW)
)
CONTACTED_HISTORY = insert(StageChangeRow).values(
    contact_id=bindparam("cid"),
    at=NOW,
    from_stage=NEW,
    to_stage=CONTACTED,
    reason=bindparam("reason"),
)


def suppress(session: Session, key: str, reason: str, now: datetime) -> None:
    """Add an address to the suppression list (once)."""
    if session.scalar(select(SuppressionRow.id).where(SuppressionRow.email_key == key)) is None:
        session.add(SuppressionRow(email_key=key, reason=reason, created_at=now))
