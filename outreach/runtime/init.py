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
    smtp_host: str
    imap_host: str
    timezone: str = "America/New_York"


QUESTIONS = {
    "practice_name": "Practice name (as it signs its emails)",
    "therapist": "Therapist's name (who the emails come from)",
    "ideal_client": "Ideal client you share with referral sources (e.g. adults with anxiety)",
    "method": "Your method, in plain words (e.g. cognitive behavioral therapy)",
    "result": "The main result clients reach (e.g. fewer panic attacks, better sleep)",
    "postal_address": "Practice postal address (in every email's footer)",
    "sender": "Sender email address (replies come back here)",
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
    if name in ("smtp_host", "imap_host") and not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        raise ValueError(f"{value!r} is not a host name")
    return value


def answers_from(values: dict[str, str | None]) -> Answers:
    """Answers from flags; every missing or invalid one is named (``--flag: problem``)."""
    problems, clean = [], {}
    for field in fields(Answers):
        value = values.get(field.name)
        flag = "--" + field.name.replace("_", "-")
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
        ("smtp", "host"): answers.smtp_host,
        ("smtp", "username"): answers.sender,
        ("imap", "host"): answers.imap_host,
        ("imap", "username"): answers.sender,
    }
    for (section, key), value in values.items():
        text = set_value(text, section, key, value)
    tomllib.loads(text)  # a broken result is a bug here, never a file for the user
    return text


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
