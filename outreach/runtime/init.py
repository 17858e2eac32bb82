"""``outreach init``: a new practice folder with a config, the starter templates and sample
contacts, from a few answers. The answers go into a copy of the shipped example config
(``outreach/starter/outreach.toml``), so every key keeps its comment."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from outreach.config.providers import PRESETS
from outreach.domain.fields import check_timezone, normalize_email
from outreach.errors import ConfigError

STARTER = resources.files("outreach") / "starter"


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
}


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
    return value


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


def answers_from(values: dict[str, str | None]) -> Answers:
    """Answers from flags; every missing or invalid one is named (``--flag: problem``)."""
    problems, clean = [], {}
    values = {**values, "provider": values.get("provider") or guess_provider(values.get("sender"))}
    for field in fields(Answers):
        value = values.get(field.name)
        flag = "--" + field.name.replace("_", "-")
        if not asked(field.name, values):
            continue
        if value is None:
            if field.name == "timezone":
                continue
            problems.append(f"{flag}: required with --non-interactive ({QUESTIONS[field.name]})")
            continue
        try:
            clean[field.name] = check_answer(field.name, value)
        except ValueError as exc:
            problems.append(f"{flag}: {exc}")
    if problems:
        raise ConfigError(problems)
    return Answers(**clean)


def render_config(answers: Answers) -> str:
    """The example config with the practice's answers in place; example-only values cleared."""
    text = (STARTER / "outreach.toml").read_text(encoding="utf-8")
    domain = answers.sender.rpartition("@")[2]
    values: dict[tuple[str, str], str] = {
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


def set_value(text: str, section: str, key: str, value: str) -> str:
    """Replace ``key = "..."`` inside ``[section]``, keeping the line's comment."""
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    pattern = re.compile(rf'^({re.escape(key)} = )"(?:[^"\\]|\\.)*"', re.MULTILINE)
    body, count = pattern.subn(
        lambda m: m.group(1) + json.dumps(value, ensure_ascii=False), text[start:end], count=1
    )
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
