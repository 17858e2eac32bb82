"""Why a recipient's delivery failed, and what kind of failure it is: a pure reading of an RFC
3463 status code and the remote server's own words.

Classes decide the effect: ``hard`` (this address will never take mail: the contact bounces),
``soft`` (try again later: counted), ``policy`` (the receiving side refuses *us*, our
reputation or authentication, not the address: that domain pauses). The difference between a
recipient's own rejection (5.7.1 "Recipient address rejected: Access denied", a mailbox that
takes internal mail only, relaying denied for that address) and a block of the sender (a
blocklist, SPF/DKIM/DMARC, "local policy") is read from the text, because both use 5.7.x.

``confidence`` is ``high`` only when a status and the text agree, or one of them is specific
and the other is silent; a guess is ``low``, and an unreadable failure is guessed ``soft``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HARD = "hard"
SOFT = "soft"
POLICY = "policy"

# The fixed vocabulary of reasons (compare sisimai's reason set).
USER_UNKNOWN = "user_unknown"
HOST_UNKNOWN = "host_unknown"
MAILBOX_FULL = "mailbox_full"
MAILBOX_DISABLED = "mailbox_disabled"
REJECTED_BY_RECIPIENT = "rejected_by_recipient"
SENDER_REJECTED = "sender_rejected"
SPAM_BLOCKED = "spam_blocked"
AUTH_FAILED = "auth_failed"
POLICY_REJECTED = "policy_rejected"
RATE_LIMITED = "rate_limited"
EXPIRED = "expired"
MESSAGE_TOO_BIG = "message_too_big"
NETWORK_ERROR = "network_error"
OTHER = "other"

REASONS = (
    USER_UNKNOWN,
    HOST_UNKNOWN,
    MAILBOX_FULL,
    MAILBOX_DISABLED,
    REJECTED_BY_RECIPIENT,
    SENDER_REJECTED,
    SPAM_BLOCKED,
    AUTH_FAILED,
    POLICY_REJECTED,
    RATE_LIMITED,
    EXPIRED,
    MESSAGE_TOO_BIG,
    NETWORK_ERROR,
    OTHER,
)
# What a permanent (5.x.x) failure of each reason means for the address.
_PERMANENT_CLASS = {
    USER_UNKNOWN: HARD,
    HOST_UNKNOWN: HARD,
    REJECTED_BY_RECIPIENT: HARD,
    MAILBOX_FULL: SOFT,
    MAILBOX_DISABLED: SOFT,
    RATE_LIMITED: SOFT,
    EXPIRED: SOFT,
    MESSAGE_TOO_BIG: SOFT,
    NETWORK_ERROR: SOFT,
    OTHER: SOFT,
    SENDER_REJECTED: POLICY,
    SPAM_BLOCKED: POLICY,
    AUTH_FAILED: POLICY,
    POLICY_REJECTED: POLICY,
}

# The remote server's words, in order: the first that matches names the reason. A block of
# the sender comes first (it often also says "rejected"), then what the address itself says
# ("Recipient address rejected: User unknown" is unknown, not a rule; Postfix says "Recipient
# address rejected" for every refusal at RCPT, so those words alone decide nothing), then a
# named policy, then the recipient's own rules, then the transient words. Only whether a
# reason's pattern matches counts, not where, so its whole words share one \b(?:...) group:
# the re module enters a \b alternative at every character, where it skips one that starts
# with a letter unless that letter is there.
_TEXT: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern))  # matched against lower-cased text (faster than IGNORECASE)
    for reason, pattern in (
        (
            AUTH_FAILED,
            r"\b(?:dmarc|spf|dkim)\b|unauthenticated|not authenticated|authentication "
            r"(?:fail|check)|authentication level|sender policy framework|"
            r"sending domain .{0,60}(?:does not|doesn't) (?:pass|meet)|"
            r"not pass authentication",
        ),
        (
            SENDER_REJECTED,
            r"sender (?:address |domain )?(?:rejected|refused|denied|not allowed|verif)|"
            r"(?:domain of |)sender (?:address )?(?:does not|doesn't) (?:exist|resolve)|"
            r"sender (?:is )?(?:invalid|unknown|not (?:permitted|authorized))|"
            r"mail from .* rejected|bad sender|sender (?:was |is )?rejected|unverified sender|"
            r"purported "
            r"responsible address|(?:may|might) not have permission to post|"
            r"groups\.google\.com|'send mail as'",
        ),
        (
            SPAM_BLOCKED,
            r"\b(?:(?:dns)?rbl\b|block ?list|reputation\b|spam\b|blocked (?:using|by|because|due))|"
            r"spamhaus|barracuda|spamcop|sorbs|black ?list|"
            r"listed (?:at|in|on|by) (?:\S+ ){0,3}?(?:\S*rbl|\S*bl\b|block|black|spam|zen|"
            r"spamhaus|barracuda|sorbs|spamcop)|junk mail|bulk mail|virus|malware|"
            r"(?:ip|address|host|sender|client|"
            r"connection|network|message) (?:\S+ )?(?:has been |is )?(?:temporarily )?blocked|"
            r"dnsbl|banned|denied by policy|^\s*(?:smtp; )?\d{3} blocked\b|"
            r"client host (?:\S+ )?rejected|may not be mail exchanger|invalid ip for sending|"
            r"host network not allowed|security polic(?:y|ies)|\(bl\)|"
            r"suspicious|not accepted for policy reasons",
        ),
        (
            MAILBOX_FULL,
            r"mailbox (?:is |was )?full|over ?quota|quota (?:exceeded|exceed|full)|exceeded "
            r"(?:the |their |his |her )?(?:storage|quota)|insufficient (?:storage|space|"
            r"disk)|mailbox size limit|storage (?:space|limit)|out of (?:storage|space)|"
            r"mail ?box (?:has )?exceeded|mailbox exceeds|too much mail|inbox is full",
        ),
        (
            MESSAGE_TOO_BIG,
            r"message (?:is )?too (?:big|large)|message size|size (?:limit|exceeds)|exceeds "
            r"(?:the )?(?:maximum|size|fixed maximum) (?:message )?size|too large",
        ),
        (
            MAILBOX_DISABLED,
            r"(?:account|mailbox|user|address) (?:has been |is |was )?(?:disabled|"
            r"deactivated|suspended|inactive|locked|closed|frozen|expired|blocked|"
            r"not active|no longer active|terminated)|"
            r"inactive (?:account|mailbox|user)|disabled (?:account|mailbox|user)|"
            r"temporar(?:y|ily) locked",
        ),
        (
            HOST_UNKNOWN,
            r"host (?:or domain name )?(?:not found|unknown)|host \S+ not found|unknown host|"
            r"(?<![@\w.-])[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist|unrouteable address|"
            r"domain (?:name )?"
            r"(?:not found|does not exist|doesn't exist|is not valid|unknown)|no mx|nxdomain|"
            r"unrouteable (?:mail )?domain|no such domain|"
            r"(?:host|domain) (?:name )?lookup fail|couldn't find any host|"
            r"(?:domain|host) .{0,40}does not accept mail|null mx|"
            r"(?:doesn't|does not) receive e?mail|indicated no smtp service|"
            r"domain is not reachable",
        ),
        (
            USER_UNKNOWN,
            r"user ?(?:name )?unknown|unknown (?:user|recipient|local[- ]part|mailbox|address)|"
            r"no such (?:user|mailbox|recipient|address|account|person)|"
            r"(?:user|mailbox|recipient|address|account|alias)(?: \S+)? (?:does not|doesn't|"
            r"did not) exist|not exist|not found|couldn'?t be found|could not be found|"
            r"invalid (?:recipient|mailbox|address|user)|mailbox (?:is )?unavailable|"
            r"unavailable mailbox|recipnotfound|recipientnotfound|no mailbox|"
            r"(?:is not|isn't|not) a (?:known|valid) (?:user|recipient|mailbox|address)|"
            r"bad (?:destination|recipient) (?:mailbox )?address|"
            r"account that you tried to reach does not exist|no longer (?:valid|available|"
            r"exists)|has moved|undeliverable address|addressee unknown|unknown or illegal "
            r"alias|does not have an account|no account|not listed in (?:the )?(?:domino "
            r"directory|(?:public )?name & address book|address book|directory)|"
            r"recipient (?:is )?not (?:found|"
            r"valid|recogni[sz]ed|listed)|no valid recipients?|invalid .{0,20}userid|"
            r"check if (?:the )?address is "
            r"correct|"
            r"(?:doesn't|does not) have an? .{0,30}account",
        ),
        (
            POLICY_REJECTED,
            r"local policy|policy (?:violation|reasons?|rejection)|against (?:our|the) policy|"
            r"administrative prohibition|content (?:rejected|filter)|not (?:rfc|compliant)|"
            r"rfc ?(?:2822|5322)|\bptr\b|reverse dns|rdns|protocol violation|mismatches client ip|"
            r"header error|duplicate header|(?:addresses|address) in from: header|"
            r"invalid (?:from: )?header|ip name lookup failed|not accepting connections",
        ),
        (
            REJECTED_BY_RECIPIENT,
            r"recipient (?:address )?(?:refused|denied)|resolver\.rst\.|"
            r"relay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed))|not permitted to "
            r"relay|not configured to relay|unable to relay|we do not relay|no relaying|"
            r"not (?:authorized|allowed|"
            r"permitted) to (?:send|deliver|post|email)|only accepts? (?:mail|messages) from|"
            r"(?:internal|authorized|authenticated) (?:senders?|users?) only|"
            r"restricted (?:to|group|delivery)|external senders|accept(?:s)? internal|"
            r"does not accept (?:mail|messages|email) from|rejected by (?:the )?recipient|"
            r"recipient.{0,40}(?:rule|filter|blocked|refuses)|delivery not authori[sz]ed|"
            r"blocked by (?:the )?recipient|"
            r"(?:user|recipient|mailbox) (?:has )?(?:blocked|filtered)|\bmessage filtered\b|"
            r"message (?:was )?rejected by (?:the )?(?:recipient|user)|refused by recipient",
        ),
        (
            RATE_LIMITED,
            r"rate ?limit|too many (?:messages|connections|recipients|mails|concurrent)|"
            r"receiving mail at a rate|sending limit exceeded|sending quota|frequency limited|"
            r"throttl|sending (?:limit|quota)|try (?:again )?later|slow down|exceeded "
            r"(?:the )?(?:rate|limit of)|temporarily "
            r"deferred",
        ),
        (
            EXPIRED,
            r"expired|retry (?:time|timeout)|delivery time|time ?out.{0,30}(?:queue|deliver)|"
            r"too long in (?:the )?queue|could not be delivered (?:for|within|in)|"
            r"giving up|gave up|unable to deliver .{0,40}(?:hours|days)|"
            r"failed \d+ attempts|failing for a long time|retry timeout exceeded|"
            r"aborted after|"
            r"not delivered within",
        ),
        (
            NETWORK_ERROR,
            r"connection (?:refused|timed out|reset|lost|closed|dropped)|network|timed out|"
            r"timeout|unreachable|no route|dns (?:failure|error|lookup)|"
            r"(?:temporary )?lookup failure|name service error|did not accept our requests? to "
            r"connect|hop count exceeded|too many hops|routing loop|not responding|not reachable",
        ),
    )
)
# "Access denied" alone: a refusal of this address when nothing else is said (Exchange and
# Postfix "Recipient address rejected: Access denied"), too weak to outweigh other words.
_ACCESS_DENIED = re.compile(r"access denied|not authorized|not permitted")
# Where in the SMTP dialogue the refusal came. Before RCPT TO, the receiving side refused
# the connection, us or our address: never this recipient (Exim "after MAIL FROM", Postfix
# "in reply to MAIL FROM command", a refused greeting).
_BEFORE_RCPT = re.compile(
    r"after (?:initial connection|connect(?:ion)?|ehlo|helo|mail from)|in reply to "
    r"(?:mail from|ehlo|helo) command|(?:greeting|banner) (?:was )?(?:rejected|refused)"
)
_ABOUT_A_HOST = re.compile(r"smtp server|\bip\b|\bhost\b|relay|connection")
_AT_RCPT = re.compile(r"rcpt to|in reply to rcpt|after rcpt")
_ABOUT_AN_ADDRESS = re.compile(r"address|recipient|user|mailbox|account")
_AFTER_DATA = re.compile(r"after (?:end of )?data|in reply to (?:end of )?data command")
# A specific status alone says this much (RFC 3463 3.3-3.9).
_STATUS_REASON = {
    "1.0": USER_UNKNOWN,
    "1.1": USER_UNKNOWN,
    "1.2": HOST_UNKNOWN,
    "1.3": USER_UNKNOWN,
    "1.6": USER_UNKNOWN,
    "1.10": HOST_UNKNOWN,  # RFC 7505: the recipient's domain has a null MX
    "1.7": SENDER_REJECTED,
    "1.8": SENDER_REJECTED,
    "2.1": MAILBOX_DISABLED,
    "2.2": MAILBOX_FULL,
    "2.3": MESSAGE_TOO_BIG,
    "3.4": MESSAGE_TOO_BIG,
    "4.4": HOST_UNKNOWN,
    "4.7": EXPIRED,
    "4.0": NETWORK_ERROR,  # other or undefined network or routing status
    "4.1": NETWORK_ERROR,
    "4.2": NETWORK_ERROR,
    "5.3": RATE_LIMITED,
    "7.13": MAILBOX_DISABLED,  # RFC 3463: user account disabled
    "7.17": USER_UNKNOWN,  # mailbox owner has changed
    "7.23": AUTH_FAILED,
    "7.24": AUTH_FAILED,
    "7.25": POLICY_REJECTED,  # RFC 7372: no reverse DNS for our address
    "7.26": AUTH_FAILED,
    "7.509": AUTH_FAILED,  # Microsoft 365: the sending domain fails DMARC
}
# Microsoft 365's own 5.7.x codes (its NDR reference): 5.7.1xx are the recipient's or its
# group's delivery restrictions; 5.7.5xx-7xx block the sender, its address or its tenant.
_MICROSOFT_RECIPIENT = re.compile(r"^7\.1[0-9]{2}$")
_MICROSOFT_SENDER = re.compile(r"^7\.[5-7][0-9]{2}$")
_PROVIDER_DETAIL = re.compile(r"7\.\d{3}")  # a provider's own 5.7.xxx
STATUS = re.compile(r"(?<![0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9]|\.[0-9])")
_REPLY_CODE = re.compile(r"(?<![0-9.])([45])[0-9]{2}(?=[ -])")


@dataclass(frozen=True)
class FailureReading:
    """What one recipient's failure is."""

    bounce_class: str  # hard | soft | policy
    reason: str
    status: str | None  # the most specific RFC 3463 code found
    confidence: str  # high | low


def read_failure(
    status: str | None, text: str, *, delayed: bool = False, gave_up: bool = False
) -> FailureReading:
    """Read one recipient's failure from its ``Status`` (may be None or generic such as
    5.0.0) and the server's text (``Diagnostic-Code``, or the report's prose). ``delayed``:
    the report says the message is still being retried (RFC 3464 ``Action: delayed``);
    ``gave_up``: it says ``Action: failed``, so even a 4.x.x status is final (the sending
    server stopped retrying) and the reason decides the class."""
    text = text[:4000].lower()
    status = _specific(status, text)
    detail = ".".join(status.split(".")[1:]) if status else ""
    words = _words(text)
    by_text, by_status = words.reason, _status_reason(detail)
    sender_code = by_status is not None and _PERMANENT_CLASS[by_status] == POLICY
    if sender_code and (by_text is None or _PERMANENT_CLASS[by_text] != POLICY):
        by_text = by_status  # the code blames the sender: its words can't make it the address
    elif by_status == REJECTED_BY_RECIPIENT and _PROVIDER_DETAIL.fullmatch(detail):
        by_text = by_status  # a provider's own 5.7.xxx code names exactly what it refused
    reason = by_text or by_status or OTHER
    temporary = (status or "").startswith("4") or _transient_reply(status, text)
    if gave_up and temporary and reason in (NETWORK_ERROR, OTHER):
        # A temporary failure the sending server stopped retrying: the message expired
        # (its last error was the network's).
        reason = EXPIRED
    transient = delayed or (temporary and not gave_up)
    if transient:
        klass = SOFT
    elif reason == OTHER and detail.startswith("7."):
        klass = POLICY  # an unexplained 5.7.x: the domain pauses until the therapist looks
    else:
        klass = _PERMANENT_CLASS[reason]
    if not transient:
        reason, klass = _by_phase(text, reason, klass)
    sure = not words.vague and (by_text is not None or by_status is not None)
    if by_text and by_status and _PERMANENT_CLASS[by_text] != _PERMANENT_CLASS[by_status]:
        sure = False  # the code and the words disagree on the effect (5.1.1 "mailbox full")
    if klass == HARD and status is None and _REPLY_CODE.search(text) is None:
        sure = False  # no code backs the words: "not found" may be about a page
    return FailureReading(klass, reason, status, "high" if sure else "low")


@dataclass(frozen=True)
class _Words:
    reason: str | None  # the first reason the words give
    vague: bool  # they blame both the address and us


def _words(text: str) -> _Words:
    """The reason the server's words give, if any."""
    said: list[str] = []
    for reason, pattern in _TEXT:
        if said and _PERMANENT_CLASS[reason] == SOFT:
            continue  # after another reason, a soft one changes nothing below: not searched
        if pattern.search(text):
            said.append(reason)
            if reason in (AUTH_FAILED, SENDER_REJECTED):
                break  # the sender is blamed: never vague, and the first reason said stands
    blamed = {_PERMANENT_CLASS[r] for r in said}
    vague = blamed >= {HARD, POLICY} and not {AUTH_FAILED, SENDER_REJECTED} & set(said)
    if vague:
        # Both the address and the sender are blamed in loose words ("the account may not
        # exist, or be blacklisted"): read as the address's, and low, so a person decides.
        said = [r for r in said if _PERMANENT_CLASS[r] == HARD]
    if not said and _ACCESS_DENIED.search(text):
        said = [REJECTED_BY_RECIPIENT]
    return _Words(said[0] if said else None, vague)


def _by_phase(text: str, reason: str, klass: str) -> tuple[str, str]:
    """The reason and class, given where in the SMTP dialogue a final refusal came."""
    before_rcpt = _BEFORE_RCPT.search(text)
    if before_rcpt and _AT_RCPT.search(text) is None:
        # Refused before any recipient was named: about us, not the address. At MAIL FROM
        # it is our address, unless the words blame the host; earlier, our host.
        if reason not in (SPAM_BLOCKED, AUTH_FAILED, POLICY_REJECTED, SENDER_REJECTED):
            at_sender = "mail from" in before_rcpt.group(0) and not _ABOUT_A_HOST.search(text)
            reason = SENDER_REJECTED if at_sender else POLICY_REJECTED
        return reason, POLICY
    if _AFTER_DATA.search(text) and reason == OTHER and not _ABOUT_AN_ADDRESS.search(text):
        # Refused once the content was sent, for no reason about an address: our message.
        return POLICY_REJECTED, POLICY
    return reason, klass


def _status_reason(detail: str) -> str | None:
    if detail in _STATUS_REASON:
        return _STATUS_REASON[detail]
    if _MICROSOFT_RECIPIENT.match(detail):
        return REJECTED_BY_RECIPIENT
    if _MICROSOFT_SENDER.match(detail):
        return SPAM_BLOCKED
    return None


def _specific(status: str | None, text: str) -> str | None:
    """The status, or the enhanced code the text gives when the status is generic (x.0.0)
    or missing (RFC 3464 2.3.6: the Diagnostic-Code carries the remote server's own)."""
    if status and not status.endswith(".0.0"):
        return status
    for found in STATUS.finditer(text):
        code = found.group(0)
        if not code.endswith(".0.0") and (status is None or code[0] == status[0]):
            return code
    return status


def _transient_reply(status: str | None, text: str) -> bool:
    """A 4xx SMTP reply with no enhanced code: temporary."""
    if status is not None:
        return False
    found = _REPLY_CODE.search(text)
    return found is not None and found.group(1) == "4"


__all__ = [
    "HARD",
    "POLICY",
    "REASONS",
    "SOFT",
    "STATUS",
    "FailureReading",
    "read_failure",
]
