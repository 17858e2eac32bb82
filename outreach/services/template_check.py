"""The templates check: every template a segment can send renders for every contact of it.

Nothing is sent, and the daemon does not start, while it fails (``require_templates``): a
template error (syntax, a variable that exists for nobody, a missing template or footer),
or a ``TODO:`` left in the practice's or a segment's profile (``outreach init`` writes them
for the therapist to fill in). A contact that lacks a field a template uses (no first name
where ``contact.first_name`` is used) fails nothing: it is listed as needing data, and the
dispatch pass skips it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.errors import ConfigError, TemplateProblem
from outreach.mail.compose import CONTACT_FIELDS, template_context
from outreach.mail.templates import MissingContactField, TemplateSet
from outreach.services.contacts import template_fields
from outreach.store.database import Store
from outreach.store.models import ContactRow

SYNTHETIC_CONTACT: dict[str, object] = {
    "email": "sample.contact@example.com",
    "first_name": "Sample",
    "last_name": "Contact",
    "title": "Dr.",
    "organization": "Sample Clinic",
    "custom": {},
}
PLACEHOLDER = "TODO"
# Fields every contact may have: a template that uses one is fine, a contact without it waits.
STANDARD_FIELDS = frozenset({*CONTACT_FIELDS, "tags", "custom"})


@dataclass(frozen=True)
class TemplateFailure:
    """One template that can't be rendered for one contact."""

    segment: str
    step: int
    contact: str
    problem: str

    def __str__(self) -> str:
        return f"{self.problem} (segment {self.segment}, step {self.step}, contact {self.contact})"


@dataclass(frozen=True)
class Placeholder:
    """A profile value still saying ``TODO:``: nothing is sent until it is written."""

    key: str
    value: str

    def __str__(self) -> str:
        return (
            f"{self.key}: still {self.value!r}; write it in the config "
            "(nothing is sent while a TODO is left)"
        )


@dataclass(frozen=True)
class NeedsData:
    """A contact that lacks a field its templates use: it waits; the others are sent."""

    contact: str
    segment: str
    step: int
    field: str
    template: str

    def __str__(self) -> str:
        return (
            f"{self.contact}: needs {self.field} ({self.template}, segment {self.segment}, "
            f"step {self.step}); add it with "
            f"`outreach contacts edit {self.contact} --set {self.field}=...`"
        )


@dataclass
class TemplateCheck:
    """What the check found: ``failures`` block all sending; ``needs_data`` holds one
    contact each."""

    failures: list[TemplateFailure | Placeholder] = field(default_factory=list)
    needs_data: list[NeedsData] = field(default_factory=list)


class ContactData:
    """Whether a field a template uses is contact data that some contacts have (so one
    without it needs data) or exists for nobody in the segment (so the template is wrong)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._custom: dict[str, set[str]] = {}

    def is_known(self, segment: str, name: str) -> bool:
        if name in STANDARD_FIELDS:
            return True
        if segment not in self._custom:
            query = select(ContactRow.custom).where(ContactRow.segment == segment)
            self._custom[segment] = {
                key
                for custom in self.session.scalars(query)
                for key, v in (custom or {}).items()
                if v
            }
        return name in self._custom[segment]


def check_templates(store: Store, settings: Settings, templates: TemplateSet) -> TemplateCheck:
    """Render every template each segment's sequence uses, for every contact of that segment
    (or a sample contact when it has none); every finding is returned, none raised."""
    result = TemplateCheck(failures=list(_placeholders(settings)))
    # A TODO in the config shows in every message: said once, by its key, not per message.
    look_for_placeholders = not result.failures
    seen: set[tuple[str, int, str]] = set()
    with store.session() as session:
        data = ContactData(session)
        for name, segment in settings.segments.items():
            contacts = [
                (row.email, template_fields(row))
                for row in session.scalars(select(ContactRow).where(ContactRow.segment == name))
            ] or [(f"{SYNTHETIC_CONTACT['email']} (sample)", SYNTHETIC_CONTACT)]
            for index, step in enumerate(segment.sequence):
                for email, fields in contacts:
                    context = template_context(
                        settings, name, fields, step_number=index + 1, template=step.template
                    )
                    try:
                        rendered = templates.render(
                            name,
                            step.template,
                            context,
                            needs_subject=index == 0 or not step.thread,
                        )
                    except MissingContactField as exc:
                        if data.is_known(name, exc.field):
                            result.needs_data.append(
                                NeedsData(email, name, index + 1, exc.field, exc.template)
                            )
                            continue
                        result.failures.append(TemplateFailure(name, index + 1, email, str(exc)))
                        continue
                    except TemplateProblem as exc:
                        key = (name, index, str(exc))
                        # A broken file fails for everyone: once per step, not per contact.
                        if key in seen:
                            continue
                        seen.add(key)
                        result.failures.append(TemplateFailure(name, index + 1, email, str(exc)))
                        continue
                    if look_for_placeholders and _has_placeholder(rendered.subject, rendered.body):
                        key = (name, index, PLACEHOLDER)
                        if key not in seen:
                            seen.add(key)
                            problem = f"{rendered.template}: the message still says {PLACEHOLDER}"
                            result.failures.append(TemplateFailure(name, index + 1, email, problem))
        later = [
            *_check_rule_replies(session, settings, templates),
            *_check_nurture(session, settings, templates),
        ]
        result.failures += [
            f for f in later if look_for_placeholders or PLACEHOLDER not in f.problem
        ]
    return result


def _has_placeholder(subject: str | None, body: str) -> bool:
    return f"{PLACEHOLDER}:" in f"{subject or ''}\n{body}"


def _placeholders(settings: Settings) -> list[Placeholder]:
    """Profile values still holding ``TODO``: the practice's, then each segment's."""
    found = [
        Placeholder(f"practice.{key}", value)
        for key, value in settings.practice.model_dump().items()
        if isinstance(value, str) and value.startswith(PLACEHOLDER)
    ]
    for name, segment in settings.segments.items():
        found += _profile_placeholders(f"segments.{name}", segment.profile)
    return found


def _profile_placeholders(prefix: str, profile: Mapping[str, str]) -> list[Placeholder]:
    return [
        Placeholder(f"{prefix}.{key}", value)
        for key, value in profile.items()
        if value.startswith(PLACEHOLDER)
    ]


def _check_nurture(
    session: Session, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Each segment's nurture check-in renders (a new conversation: it needs a Subject)."""
    failures = [
        _render_new_conversation(session, settings, templates, name, segment.nurture_template)
        for name, segment in settings.segments.items()
        if segment.nurture_every_days
    ]
    return [replace(f, problem=f"{f.problem} (nurture)") for f in failures if f is not None]


def _check_rule_replies(
    session: Session, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Rule replies (``reply_with``) render for every segment the rule can reach."""
    failures = []
    for index, rule in enumerate(settings.rules):
        name = rule.then.reply_with
        if not name:
            continue
        for segment in rule.when.segment or list(settings.segments):
            # A reply may go to a source we never wrote to: it needs its own Subject.
            failure = _render_new_conversation(session, settings, templates, segment, name)
            if failure is not None:
                failures.append(replace(failure, problem=f"{failure.problem} (rules[{index}])"))
    return failures


def _render_new_conversation(
    session: Session, settings: Settings, templates: TemplateSet, segment: str, template: str
) -> TemplateFailure | None:
    """Render a message that starts a conversation (so it needs a Subject) for a sample
    contact of the segment (the template's own problems: a contact's missing data is the
    sequence check's business); the failure, if it fails."""
    email = f"{SYNTHETIC_CONTACT['email']} (sample)"
    context = template_context(
        settings, segment, SYNTHETIC_CONTACT, step_number=0, template=template
    )
    try:
        rendered = templates.render(segment, template, context, needs_subject=True)
    except MissingContactField as exc:
        if ContactData(session).is_known(segment, exc.field):
            return None
        return TemplateFailure(segment, 0, email, str(exc))
    except TemplateProblem as exc:
        return TemplateFailure(segment, 0, email, str(exc))
    if _has_placeholder(rendered.subject, rendered.body):
        return TemplateFailure(
            segment, 0, email, f"{rendered.template}: the message still says {PLACEHOLDER}"
        )
    return None


def require_templates(
    store: Store, settings: Settings, templates: TemplateSet, *, consequence: str | None
) -> list[NeedsData]:
    """Raise ConfigError listing every failure (and ``consequence``, a last line saying what
    the failure stops), if any template fails to render; else the contacts that need data
    (they wait; the others are sent)."""
    check = check_templates(store, settings, templates)
    if check.failures:
        raise ConfigError([*map(str, check.failures), *([consequence] if consequence else [])])
    return check.needs_data
