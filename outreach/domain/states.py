"""The named states outreach stores: pipeline stages, delivery-ledger states, inbound kinds.

``StrEnum`` members compare equal to, and are stored as, the plain strings the database has
always held ("new", "sending", "out_of_office"), so no stored value changes.
"""

from __future__ import annotations

from enum import StrEnum


class _State(StrEnum):
    """A stored state: in every text (``str``, f-strings, ``repr`` in messages, JSON) it is
    exactly its stored string, so moving a constant to an enum changes no output."""

    def __repr__(self) -> str:
        return repr(self.value)


class Stage(_State):
    """Where a referral source stands in the relationship pipeline (built-in stages)."""

    NEW = "new"
    CONTACTED = "contacted"
    NO_RESPONSE = "no_response"
    REPLIED = "replied"
    ENGAGED = "engaged"
    REFERRING = "referring"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    DO_NOT_CONTACT = "do_not_contact"


class OutboxState(_State):
    """A delivery-ledger row's state."""

    QUEUED = "queued"  # claimed with its Message-ID; nothing handed to SMTP yet
    SENDING = "sending"  # committed right before its SMTP transaction
    SENT = "sent"
    RETRY = "retry"  # a temporary failure; tried again at next_attempt_at
    FAILED = "failed"  # permanent, or retries used up
    UNKNOWN = "unknown"  # interrupted during sending: the therapist decides
    CANCELLED = "cancelled"  # an inbound message (reply, bounce) stopped it


class InboundKind(_State):
    """What an inbound message is."""

    REPLY = "reply"
    OUT_OF_OFFICE = "out_of_office"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"  # an abuse report (RFC 5965) about one of our messages
    RECEIPT = "receipt"  # a read receipt, or a delivery report saying it arrived
    CHALLENGE = "challenge"  # a challenge-response system asks us to prove we are a person
    UNCLASSIFIABLE = "unclassifiable"
    # Handling it failed (a fault outreach had not foreseen): recorded with the error's class
    # and the inbox read on past it, so one message can't block the ones behind it.
    UNPROCESSABLE = "unprocessable"
