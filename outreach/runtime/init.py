"""``outreach init``: a new practice folder with a config, the starter templates and sample
contacts, from a few answers. The answers go into a copy of the shipped example config
(``outreach/starter/outreach.toml``), so every key keeps its comment.

Each segment's profile (``needs``, ``client_gains``, ``gains``, ``offer``) is proposed around
the practice's ideal client and result (``propose_profiles``), for the therapist to edit; or,
when asked, written as ``TODO:`` values that ``templates check`` refuses to send. The config
written holds new contacts for review (``[sending] hold_new = true``), and its holidays are
the country and state or province the therapist named (never the example's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import holidays

from outreach.config.providers import PRESETS
from outreach.domain.fields import check_timezone, normalize_email
from outreach.errors import ConfigError

STARTER = resources.files("outreach") / "starter"
PROFILE_FIELDS = ("needs", "client_gains", "gains", "offer")
PROFILE_CHOICES = ("proposed", "todo")
NO_SUBDIVISION = ("", "none", "-")

# Each segment's profile, phrased around the practice's answers ({result}); no clinical claim
# of its own. The starter config's comments say what each field completes in the templates.
PROPOSALS: dict[str, dict[str, str]] = {
    "psychiatrist": {
        "needs": "a therapist who offers therapy, support and collaboration in treatment",
        "client_gains": "{result}, with therapy and medication working toward the same goals",
        "gains": "patients who have steady support between appointments, so the medication "
        "has a fair chance to work",
        "offer": "Could I send you a one-page summary of how I work, or set up a ten-minute "
        "call at a time that suits you?",
    },
    "primary_care": {
        "needs": "a therapist you can refer a patient to with confidence when their concerns "
        "go beyond a short visit",
        "client_gains": "{result}, with care that continues after the visit",
        "gains": "one clear referral to make, and fewer loose ends in a busy day",
        "offer": "Would a ten-minute call be useful, at a time that suits your clinic?",
    },
    "pediatrician": {
        "needs": "a therapist who works well with families and keeps you in the loop",
        "client_gains": "{result}, with the family involved where it helps",
        "gains": "a referral you can make with confidence, and a colleague who works with you, "
        "not around you",
        "offer": "Could we set up a ten-minute call about how I work with families?",
    },
    "teacher": {
        "needs": "someone families can turn to, who will work with the school when the "
        "parents agree",
        "client_gains": "{result}, with home and school pulling in the same direction",
        "gains": "students who are more settled in class, and one clear contact when a family "
        "wants us to work together",
        "offer": "Could I join a short call with your counseling team to hear what you're seeing?",
    },
    "clergy": {
        "needs": "a higher level of care than pastoral conversations can give",
        "client_gains": "{result}, with their faith respected as part of their life",
        "gains": "a trusted place to send someone who needs more care, and a colleague who "
        "respects your role",
        "offer": "May I meet you for coffee to hear about your community's needs?",
    },
    "ob_gyn": {
        "needs": "a therapist you can trust with the referral, who understands this season of life",
        "client_gains": "{result} during pregnancy and in the months after birth",
        "gains": "patients who have support between visits, and one less worry in a full "
        "clinic day",
        "offer": "Could we set up a ten-minute call about how referrals to me work?",
    },
    "family_law": {
        "needs": "a therapist who supports clients through a hard process and stays out of "
        "the legal strategy",
        "client_gains": "{result}, and steadier footing for the decisions ahead",
        "gains": "clients who are calmer in meetings and better able to make decisions",
        "offer": "Could we set up a ten-minute call, so you can ask me anything about how I work?",
    },
    "hr_eap": {
        "needs": "a reliable therapist to refer employees to, who respects their privacy",
        "client_gains": "{result}, and a steadier return to work",
        "gains": "employees who get help early, and one clear contact when someone is ready "
        "to come back",
        "offer": "Could we set up a short call about how referrals from your team would work?",
    },
    "therapist": {
        "needs": "a trusted colleague for callers who aren't your fit, or when your caseload "
        "is full",
        "client_gains": "{result}, with a therapist who focuses on this work",
        "gains": "a referral you can make with confidence, and a colleague who sends people "
        "your way too",
        "offer": "Would you like to trade one-page summaries, or have a short call to learn "
        "about each other's work?",
    },
}
TODO_HINTS = {
    "needs": "what this kind of source needs from a referral (it completes: you need ...)",
    "client_gains": "what the people they refer work toward, in the source's words",
    "gains": "what this source gains (it completes: For you, that can mean ...)",
    "offer": "one concrete next step you offer, as a whole sentence",
}


@dataclass(frozen=True)
class Answers:
    """What ``init`` asks for. Addresses are checked; empty optional ones stay empty."""

    practice_name: str
    therapist: str
    ideal_client: str
    method: str
    result: str
    postal_address: str
    sender: str
    provider: str = "custom"
    smtp_host: str = ""  # asked only for a custom provider
    imap_host: str = ""
    timezone: str = "America/New_York"
    holidays_country: str = "US"  # "" for no public holidays
    holidays_subdivision: str = ""  # "" for national holidays only
    segment_profiles: str = "proposed"  # or "todo"
    hold_new: bool = True  # imported contacts wait for `outreach approve`
    # Profiles edited at the prompt: segment -> field -> text (over the proposals).
    profiles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


QUESTIONS = {
    "practice_name": "Practice name (as it signs its emails)",
    "therapist": "Therapist's name (who the emails come from)",
    "ideal_client": "Ideal client you share with referral sources (e.g. adults with anxiety)",
    "method": "Your method, in plain words (e.g. cognitive behavioral therapy)",
    "result": "The main result clients reach (e.g. fewer panic attacks, better sleep)",
    "postal_address": "Practice postal address (in every email's footer)",
    "sender": "Sender email address (replies come back here)",
    "provider": "Mail provider (" + ", ".join([*PRESETS, "custom"]) + ")",
    "smtp_host": "Outgoing mail (SMTP) server",
    "imap_host": "Incoming mail (IMAP) server",
    "timezone": "Time zone (IANA name)",
    "holidays_country": "Country for public holidays (two letters: US, CA, GB...; 'none')",
    "holidays_subdivision": "State or province for its holidays (e.g. WI, ON; 'none' for "
    "national holidays only)",
    "segment_profiles": "Segment wording: 'proposed' (shown above; edit it in the config) "
    "or 'todo' (write TODO: values to fill in; nothing is sent until you do)",
}
# Asked only when missing from the flags; the rest of init's questions are required.
DEFAULTS = {"timezone": "America/New_York", "holidays_country": "US"}
OPTIONAL = ("holidays_subdivision", "segment_profiles")


def check_answer(name: str, value: str) -> str:
    """The answer, cleaned; raises ValueError with a sentence a person can act on."""
    value = value.strip()
    if not value:
        raise ValueError("an answer is required")
    if any(ord(c) < 32 for c in value):
        raise ValueError("must be a single line")
    if name == "sender":
        return normalize_email(value)
    if name == "timezone":
        check_timezone(value)
    if name == "provider" and value not in (*PRESETS, "custom"):
        raise ValueError(f"{value!r} is not one of {', '.join([*PRESETS, 'custom'])}")
    if name in ("smtp_host", "imap_host") and not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        raise ValueError(f"{value!r} is not a host name")
    if name == "segment_profiles" and value not in PROFILE_CHOICES:
        raise ValueError(f"{value!r} is not one of {', '.join(PROFILE_CHOICES)}")
    return value


def check_country(value: str) -> str:
    """A country code the holidays library knows ("US"), or "" for none."""
    code = value.strip().upper()
    if code.lower() in NO_SUBDIVISION:
        return ""
    if code not in holidays.list_supported_countries():
        raise ValueError(f"{value.strip()!r} is not a country code with public holidays (e.g. US)")
    return code


def subdivisions(country: str) -> list[str]:
    """The states or provinces with holidays of their own in ``country``."""
    return list(holidays.list_supported_countries().get(country, [])) if country else []


def check_subdivision(country: str, value: str) -> str:
    """A state or province of ``country`` ("WI"), or "" for national holidays only."""
    code = value.strip()
    if code.lower() in NO_SUBDIVISION:
        return ""
    known = {s.upper(): s for s in subdivisions(country)}
    if code.upper() not in known:
        shown = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
        raise ValueError(
            f"{code!r} is not a state or province of {country or 'no country'}"
            + (f" ({shown})" if shown else "")
        )
    return known[code.upper()]


def propose_profiles(answers: Answers) -> dict[str, dict[str, str]]:
    """Each starter segment's profile around the answers (edited ones win), or TODO values."""
    proposed: dict[str, dict[str, str]] = {}
    for segment, texts in PROPOSALS.items():
        if answers.segment_profiles == "todo":
            proposed[segment] = {k: f"TODO: {TODO_HINTS[k]}" for k in PROFILE_FIELDS}
            continue
        own = answers.profiles.get(segment, {})
        proposed[segment] = {
            k: own.get(k) or texts[k].format(result=answers.result) for k in PROFILE_FIELDS
        }
    return proposed


# Providers recognized from the sender's address, for the question's default.
_PROVIDER_DOMAINS = {
    "gmail.com": "gmail",
    "googlemail.com": "gmail",
    "outlook.com": "outlook_com",
    "hotmail.com": "outlook_com",
    "live.com": "outlook_com",
    "icloud.com": "icloud",
    "me.com": "icloud",
    "fastmail.com": "fastmail",
    "yahoo.com": "yahoo",
    "zohomail.com": "zoho",
}


def guess_provider(sender: str | None) -> str:
    """The provider a sender address obviously belongs to, else "custom" (a practice's own
    domain may be on any provider: only the person knows)."""
    return _PROVIDER_DOMAINS.get((sender or "").rpartition("@")[2].lower(), "custom")


def asked(name: str, values: dict[str, str | None]) -> bool:
    """Whether ``init`` needs this answer: the servers only for a custom provider."""
    if name in ("smtp_host", "imap_host"):
        return (values.get("provider") or "custom") == "custom"
    return True


def answers_from(
    values: dict[str, str | None], *, profiles: Mapping[str, Mapping[str, str]] | None = None
) -> Answers:
    """Answers from flags (and ``profiles`` edited at the prompt); every missing or invalid
    one is named (``--flag: problem``)."""
    problems: list[str] = []
    clean: dict[str, Any] = {"profiles": profiles or {}}
    values = {**values, "provider": values.get("provider") or guess_provider(values.get("sender"))}
    for answer in fields(Answers):
        name = answer.name
        value = values.get(name)
        flag = "--" + name.replace("_", "-")
        if name in ("hold_new", "profiles") or not asked(name, values):
            continue
        if value is None:
            if name in DEFAULTS or name in OPTIONAL:
                continue
            problems.append(f"{flag}: required with --non-interactive ({QUESTIONS[name]})")
            continue
        try:
            if name == "holidays_country":
                clean[name] = check_country(value)
            elif name == "holidays_subdivision":
                country = check_country(
                    values.get("holidays_country") or DEFAULTS["holidays_country"]
                )
                clean[name] = check_subdivision(country, value)
            else:
                clean[name] = check_answer(name, value)
        except ValueError as exc:
            problems.append(f"{flag}: {exc}")
    if problems:
        raise ConfigError(problems)
    return Answers(**clean)


def render_config(answers: Answers) -> str:
    """The example config with the practice's answers in place; example-only values cleared."""
    text = (STARTER / "outreach.toml").read_text(encoding="utf-8")
    domain = answers.sender.rpartition("@")[2]
    values: dict[tuple[str, str], str | bool] = {
        ("practice", "name"): answers.practice_name,
        ("practice", "therapist"): answers.therapist,
        ("practice", "credentials"): "",
        ("practice", "ideal_client"): answers.ideal_client,
        ("practice", "method"): answers.method,
        ("practice", "result"): answers.result,
        ("practice", "postal_address"): answers.postal_address,
        ("practice", "phone"): "",
        ("practice", "website"): "",
        ("practice", "timezone"): answers.timezone,
        ("sender", "from_name"): answers.therapist,
        ("sender", "from_address"): answers.sender,
        ("sender", "message_id_domain"): domain,
        ("sender", "notify_address"): answers.sender,
        ("mailbox", "provider"): answers.provider,
        ("smtp", "username"): answers.sender,
        ("imap", "username"): answers.sender,
    }
    if answers.provider == "custom":
        values |= {("smtp", "host"): answers.smtp_host, ("imap", "host"): answers.imap_host}
    values |= {
        ("sending", "holidays_country"): answers.holidays_country,
        ("sending", "holidays_subdivision"): answers.holidays_subdivision,
        ("sending", "hold_new"): answers.hold_new,
    }
    for segment, profile in propose_profiles(answers).items():
        values |= {(f"segments.{segment}", key): text for key, text in profile.items()}
    for (section, key), value in values.items():
        text = set_value(text, section, key, value)
    preset = PRESETS.get(answers.provider)
    if preset is not None:
        for section in ("smtp", "imap"):
            for key in ("host", "port", "security", "auth"):
                text = drop_key(text, section, key)
        if preset.auth == "oauth2":
            text = text.replace(
                "# [oauth2]\n",
                '[oauth2]   # filled in from README, "Signing in with OAuth2"\n',
                1,
            ).replace('# client_id = ""', 'client_id = ""', 1)
    tomllib.loads(text)  # a broken result is a bug here, never a file for the user
    return text


def drop_key(text: str, section: str, key: str) -> str:
    """Take ``key = ...`` out of ``[section]``: the provider's preset gives it instead."""
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.MULTILINE)
    return text[:start] + pattern.sub("", text[start:end], count=1) + text[end:]


def set_value(text: str, section: str, key: str, value: str | bool) -> str:
    """Replace ``key = "..."`` (or ``key = true``/``false`` for a bool) inside ``[section]``,
    keeping the line's comment."""
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    old = r"(?:true|false)" if isinstance(value, bool) else r'"(?:[^"\\]|\\.)*"'
    new = json.dumps(value, ensure_ascii=False)  # TOML's true/false and basic strings alike
    pattern = re.compile(rf"^({re.escape(key)} = ){old}", re.MULTILINE)
    body, count = pattern.subn(lambda m: m.group(1) + new, text[start:end], count=1)
    if count != 1:
        raise AssertionError(f"the starter config has no {section}.{key}")
    return text[:start] + body + text[end:]


def planned_files(directory: Path) -> list[Path]:
    """What ``init`` writes: the config, sample contacts and every starter template."""
    templates = STARTER / "templates"
    found = [directory / "config" / "outreach.toml", directory / "contacts.csv"]
    stack = [(templates, directory / "templates")]
    while stack:
        source, target = stack.pop()
        for entry in source.iterdir():
            if entry.is_dir():
                stack.append((entry, target / entry.name))
            else:
                found.append(target / entry.name)
    return sorted(found)


def init_project(directory: Path, answers: Answers, *, force: bool = False) -> list[Path]:
    """Write a new practice folder; refuses to overwrite any file unless ``force``."""
    targets = planned_files(directory)
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        shown = [f"  {p}" for p in existing[:10]]
        more = len(existing) - len(shown)
        raise ConfigError(
            [
                f"{directory}: {len(existing)} file(s) would be overwritten; nothing was written:",
                *shown,
                *([f"  ... and {more} more"] if more else []),
                "use --force to overwrite them, or choose another folder",
            ]
        )
    try:
        (directory / "config").mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(directory / "config" / "outreach.toml", render_config(answers))
        with resources.as_file(STARTER / "contacts.csv") as contacts:
            shutil.copyfile(contacts, directory / "contacts.csv")
        with resources.as_file(STARTER / "templates") as templates:
            shutil.copytree(templates, directory / "templates", dirs_exist_ok=True)
    except OSError as exc:
        raise ConfigError([f"{directory}: can't write there ({exc.strerror})"]) from None
    return targets


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only whatever the umask: a config
    names the practice and may come to hold the database password (``[storage] url``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # a file overwritten with --force keeps its old mode otherwise
        file.write(text)
