"""The templates check: every template a segment can send renders for every contact of it.

Nothing is sent, and the daemon does not start, while it fails (``require_templates``): a
template error (syntax, a variable that exists for nobody, a missing template or footer),
or a ``TODO:`` left in the practice's or a segment's profile (``outreach init`` writes them
for the therapist to fill in) or in a template's own text; a ``TODO:`` in a contact's data
(a "Notes" cell saying "TODO: call back") is the contact's business, never a placeholder.
A contact that lacks a field a template uses (no first name where ``contact.first_name`` is
used) fails nothing: it is listed as needing data, and the dispatch pass skips it alone.
A field counts as contact data, standard (``organization``) or custom, only if at least one
contact of the segment has a value for it: else the template is wrong for everyone (a
segment imported without an organization column, a template saying "at {{
contact.organization }}"), and that is a failure naming the template, line and field. A
segment with no contacts yet is rendered for a sample contact, which has every standard
field: its contacts to come are judged when they are there.
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
    "timezone": "America/New_York",
    "tags": ["Sample"],
    "custom": {},
}
PLACEHOLDER = "TODO"
# Fields every contact may have; each is contact data if some contact of the segment has it.
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
    without it needs data) or exists for nobody in the segment (so the template is wrong):
    the same rule for standard fields (``organization``) and custom ones."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._fields: dict[str, frozenset[str] | None] = {}

    def fields(self, segment: str) -> frozenset[str] | None:
        """The fields some contact of ``segment`` has a value for, standard and custom (an
        empty value is none, as templates see it); None if the segment has no contacts."""
        if segment not in self._fields:
            rows = self.session.execute(
                select(
                    *(getattr(ContactRow, name) for name in CONTACT_FIELDS),
                    ContactRow.tags,
                    ContactRow.custom,
                ).where(ContactRow.segment == segment)
            )
            found: set[str] | None = None
            for *standard, tags, custom in rows:
                found = found if found is not None else {"custom"}
                found.update(n for n, v in zip(CONTACT_FIELDS, standard, strict=True) if v)
                found.update(["tags"] if tags else [])
                found.update(key for key, v in (custom or {}).items() if v)
            self._fields[segment] = None if found is None else frozenset(found)
        return self._fields[segment]

    def is_known(self, segment: str, name: str) -> bool:
        """True if ``name`` is contact data in ``segment``: some contact of it has a value
        for it (or, for a segment with no contacts yet, it is a standard field)."""
        known = self.fields(segment)
        return name in STANDARD_FIELDS if known is None else name in known

    def sample(self, segment: str) -> dict[str, object]:
        """The sample contact, with only the standard fields some contact of ``segment`` has
        (all of them while it has none): a template using one nobody has fails for it."""
        known = self.fields(segment)
        if known is None:
            return dict(SYNTHETIC_CONTACT)
        return {
            k: v for k, v in SYNTHETIC_CONTACT.items() if k in known or k in ("email", "custom")
        }


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
                    needs_subject = index == 0 or not step.thread
                    try:
                        rendered = templates.render(
                            name, step.template, context, needs_subject=needs_subject
                        )
                    except MissingContactField as exc:
                        if data.is_known(name, exc.field):
                            result.needs_data.append(
                                NeedsData(email, name, index + 1, exc.field, exc.template)
                            )
                            continue
                        key = (name, index, str(exc))
                        # A field nobody has is the template's error: once per step, too.
                        if key not in seen:
                            seen.add(key)
                            result.failures.append(
                                TemplateFailure(name, index + 1, email, str(exc))
                            )
                        continue
                    except TemplateProblem as exc:
                        key = (name, index, str(exc))
                        # A broken file fails for everyone: once per step, not per contact.
                        if key in seen:
                            continue
                        seen.add(key)
                        result.failures.append(TemplateFailure(name, index + 1, email, str(exc)))
                        continue
                    if (
                        look_for_placeholders
                        and _has_placeholder(rendered.subject, rendered.body)
                        and _placeholder_is_not_the_contacts(
                            templates, settings, name, index, needs_subject, fields
                        )
                    ):
                        key = (name, index, PLACEHOLDER)
                        if key not in seen:
                            seen.add(key)
                            problem = f"{rendered.template}: the message still says {PLACEHOLDER}"
                            result.failures.append(TemplateFailure(name, index + 1, email, problem))
        later = [
            *_check_rule_replies(data, settings, templates),
            *_check_nurture(data, settings, templates),
        ]
        result.failures += [
            f for f in later if look_for_placeholders or PLACEHOLDER not in f.problem
        ]
    return result


def _has_placeholder(subject: str | None, body: str) -> bool:
    return f"{PLACEHOLDER}:" in f"{subject or ''}\n{body}"


def _placeholder_is_not_the_contacts(
    templates: TemplateSet,
    settings: Settings,
    segment: str,
    index: int,
    needs_subject: bool,
    fields: Mapping[str, object],
) -> bool:
    """For a message that says ``TODO:``: True if it still does with every TODO in the
    contact's data lowercased (rendered again), so the template's text or the config says it;
    a contact's own "TODO: call back", printed by a template, is no placeholder."""
    clean = {key: _lowercase_placeholders(value) for key, value in fields.items()}
    if clean == fields:
        return True
    template = settings.segments[segment].sequence[index].template
    context = template_context(settings, segment, clean, step_number=index + 1, template=template)
    try:
        again = templates.render(segment, template, context, needs_subject=needs_subject)
    except TemplateProblem:
        return True  # it rendered with the contact's data as it is: can't tell, so say it
    return _has_placeholder(again.subject, again.body)


def _lowercase_placeholders(value: object) -> object:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, PLACEHOLDER.lower())
    if isinstance(value, list):
        return [_lowercase_placeholders(v) for v in value]
    if isinstance(value, dict):
        return {k: _lowercase_placeholders(v) for k, v in value.items()}
    return value


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
    data: ContactData, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Each segment's nurture check-in renders (a new conversation: it needs a Subject)."""
    failures = [
        _render_new_conversation(data, settings, templates, name, segment.nurture_template)
        for name, segment in settings.segments.items()
        if segment.nurture_every_days
    ]
    return [replace(f, problem=f"{f.problem} (nurture)") for f in failures if f is not None]


def _check_rule_replies(
    data: ContactData, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Rule replies (``reply_with``) render for every segment the rule can reach."""
    failures = []
    for index, rule in enumerate(settings.rules):
        name = rule.then.reply_with
        if not name:
            continue
        for segment in rule.when.segment or list(settings.segments):
            # A reply may go to a source we never wrote to: it needs its own Subject.
            failure = _render_new_conversation(data, settings, templates, segment, name)
            if failure is not None:
                failures.append(replace(failure, problem=f"{failure.problem} (rules[{index}])"))
    return failures


def _render_new_conversation(
    data: ContactData, settings: Settings, templates: TemplateSet, segment: str, template: str
) -> TemplateFailure | None:
    """Render a message that starts a conversation (so it needs a Subject) for a sample
    contact of the segment, with the standard fields its contacts have (the template's own
    problems: a contact's missing data is the sequence check's business); the failure, if it
    fails."""
    email = f"{SYNTHETIC_CONTACT['email']} (sample)"
    context = template_context(
        settings, segment, data.sample(segment), step_number=0, template=template
    )
    try:
        rendered = templates.render(segment, template, context, needs_subject=True)
    except MissingContactField as exc:
        if data.is_known(segment, exc.field):
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
