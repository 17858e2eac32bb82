"""The store's tables, as SQLAlchemy 2 declarative models (migrations live in ``migrations/``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

JsonValue = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Root of the store's tables."""


class ContactRow(Base):
    """A referral source and where the relationship stands."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Case-folded address: two contacts can't differ only by case (unique index below).
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    organization: Mapped[str | None] = mapped_column(String(300))
    segment: Mapped[str] = mapped_column(String(64), index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    custom: Mapped[dict[str, str]] = mapped_column(JsonValue, default=dict)
    stage: Mapped[str] = mapped_column(String(64), index=True)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the dispatcher should next look at this contact: an index, so a pass reads only
    # the contacts that may be due, however many are not.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # Held for the therapist's review since then (``[sending] hold_new``): nothing is sent to
    # it until ``outreach approve``. None: not held.
    held_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # What the contact lacks that its templates need ("first_name"): only it waits, until
    # the data is added. None: nothing missing (as far as the last pass knew).
    needs_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    history: Mapped[list[StageChangeRow]] = relationship(
        back_populates="contact", order_by="StageChangeRow.id", cascade="all, delete-orphan"
    )
    referrals: Mapped[list[ReferralRow]] = relationship(
        back_populates="contact", order_by="ReferralRow.id", cascade="all, delete-orphan"
    )


class StageChangeRow(Base):
    """One recorded move between pipeline stages: when, from, to, and why."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)

    contact: Mapped[ContactRow] = relationship(back_populates="history")

    __table_args__ = (Index("ix_stage_changes_contact_at", "contact_id", "at"),)


class ReferralRow(Base):
    """A referral received from a source. The note must never identify a client."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    received_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

    contact: Mapped[ContactRow] = relationship(back_populates="referrals")


class OutboxRow(Base):
    """The delivery ledger: one row per (contact, sequence step), never two.

    Its Message-ID is fixed and committed before the SMTP transaction starts, so a crash
    can always be reconciled against what the server or the Sent folder holds.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column()
    template: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    contact: Mapped[ContactRow] = relationship()

    __table_args__ = (UniqueConstraint("contact_id", "step_index", name="uq_outbox_contact_step"),)


class SuppressionRow(Base):
    """An address that must never be emailed again (hard bounce, opt-out, by hand)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StateRow(Base):
    """Small facts the daemon keeps across restarts (e.g. why sending is paused)."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboundEventRow(Base):
    """One inbound message we looked at: its kind and effect, never its body.

    ``message_key`` (the Message-ID, or a digest of the bytes when there is none) is unique,
    so a message seen twice (two folders, a UIDVALIDITY reset) has effect once.
    """

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_key: Mapped[str] = mapped_column(String(255), unique=True)
    folder: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    trusted: Mapped[bool] = mapped_column(default=False)
    sender_domain: Mapped[str] = mapped_column(String(255), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    step_index: Mapped[int | None] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    effect: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[str] = mapped_column(String(8), default="high")
    # A low-confidence reading waits for the therapist: "pending" until `inbox decide`
    # records the kind they chose, who they are and when ("decided").
    review: Mapped[str | None] = mapped_column(String(16), index=True)
    decided_as: Mapped[str | None] = mapped_column(String(32))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DomainPauseRow(Base):
    """Sending to one recipient domain is paused: it refused us for policy (reputation,
    authentication), so more mail there would only hurt. Lifted by `sending resume --domain`."""

    __tablename__ = "domain_pauses"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_policy_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class MailboxStateRow(Base):
    """How far the watcher has read a folder: (UIDVALIDITY, last UID), per RFC 3501 2.3.1.1."""

    __tablename__ = "mailbox_state"

    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
