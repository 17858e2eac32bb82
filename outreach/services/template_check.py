"""The templates check: every template a segment can send renders for its contacts.

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

Each step is rendered once per set of non-empty fields among the segment's contacts (the
keys ``template_context`` gives a template), for the first contact with that set, not once
per contact: it runs before every ``send-due`` and at daemon start, and 2,000 contacts
usually share two or three sets. A missing field follows from the set, so every contact of a
set that lacks it is listed with its own address. A template that branches on a value (``{%
if contact.organization == "X" %}{{ contact.title }}{% endif %}``) can need a field, or fail,
only for some contacts of a set, and the first one may not take that branch: the check is
then an early warning, not the last word. That is enough for missing data, because the
dispatch pass renders each message again and marks a contact ``needs_data`` at send time
(``services/dispatch.py``). An error or a ``TODO:`` written only inside such a branch is
found only if a set's first contact takes it (rendering every contact found it only if some
contact took it), and the pass looks for no ``TODO:``: keep placeholders out of branches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.errors import ConfigError, TemplateProblem
from outreach.mail.compose import CONTACT_FIELDS, template_context
from outreach.mail.templates import MissingContactField, TemplateSet
from outreach.services.contacts import template_fields
from outreach.store.database import Store, in_chunks
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
_EMAIL = CONTACT_FIELDS.index("email")


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


# What a template sees of a contact, as ``template_context`` builds it: the standard fields
# with a value, whether it has tags, and the custom keys with a value (kept apart from the
# standard ones: a custom "organization" is also ``contact.custom.organization``).
_FieldSet = tuple[frozenset[str], bool, frozenset[str]]


def _field_set(
    standard: Iterable[object], tags: object, custom: Mapping[str, object] | None
) -> _FieldSet:
    """The non-empty fields of a contact a template can use; ``standard`` holds its
    ``CONTACT_FIELDS`` values in order (an empty value is none, as templates see it)."""
    return (
        frozenset(name for name, value in zip(CONTACT_FIELDS, standard, strict=True) if value),
        bool(tags),
        frozenset(key for key, value in (custom or {}).items() if value),
    )


@dataclass(frozen=True)
class _Member:
    """One contact of a segment, as the check groups it: by its non-empty fields."""

    id: int
    email: str
    fields: _FieldSet


class ContactData:
    """Whether a field a template uses is contact data that some contacts have (so one
    without it needs data) or exists for nobody in the segment (so the template is wrong):
    the same rule for standard fields (``organization``) and custom ones."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._members: dict[str, list[_Member]] = {}
        self._fields: dict[str, frozenset[str] | None] = {}

    def members(self, segment: str) -> list[_Member]:
        """The contacts of ``segment`` with their non-empty fields, oldest first (read once,
        columns only: no contact is built)."""
        if segment not in self._members:
            rows = self.session.execute(
                select(
                    ContactRow.id,
                    *(getattr(ContactRow, name) for name in CONTACT_FIELDS),
                    ContactRow.tags,
                    ContactRow.custom,
                )
                .where(ContactRow.segment == segment)
                .order_by(ContactRow.id)
            )
            # One object per distinct set, shared by its contacts (thousands share a few).
            sets: dict[_FieldSet, _FieldSet] = {}
            members = []
            for id_, *standard, tags, custom in rows:
                key = _field_set(standard, tags, custom)
                members.append(_Member(id_, standard[_EMAIL], sets.setdefault(key, key)))
            self._members[segment] = members
        return self._members[segment]

    def fields(self, segment: str) -> frozenset[str] | None:
        """The fields some contact of ``segment`` has a value for, standard and custom (an
        empty value is none, as templates see it); None if the segment has no contacts."""
        if segment not in self._fields:
            members = self.members(segment)
            found: set[str] = {"custom"}
            for standard, tags, custom in {member.fields for member in members}:
                found |= standard | custom | ({"tags"} if tags else set())
            self._fields[segment] = frozenset(found) if members else None
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


@dataclass(frozen=True)
class _Lacks:
    """A step's render for a field set lacked a field some contact of the segment has."""

    field: str
    template: str


def check_templates(store: Store, settings: Settings, templates: TemplateSet) -> TemplateCheck:
    """Render every template each segment's sequence uses, once for each set of non-empty
    fields among its contacts (or for a sample contact when it has none); every finding is
    returned, none raised."""
    result = TemplateCheck(failures=list(_placeholders(settings)))
    # A TODO in the config shows in every message: said once, by its key, not per message.
    look_for_placeholders = not result.failures
    seen: set[tuple[str, int, str]] = set()
    with store.session() as session:
        data = ContactData(session)
        for name, segment in settings.segments.items():
            keyed, representatives = _representatives(session, data, name)
            for index in range(len(segment.sequence)):
                lacking: dict[_FieldSet, _Lacks] = {}
                for key, (first, its_fields) in representatives.items():
                    outcome = _check_step(
                        data, settings, templates, name, index, its_fields, look_for_placeholders
                    )
                    if isinstance(outcome, _Lacks):
                        lacking[key] = outcome
                    elif outcome is not None and (name, index, outcome) not in seen:
                        # A broken file fails for everyone: once per step, not per set.
                        seen.add((name, index, outcome))
                        result.failures.append(TemplateFailure(name, index + 1, first, outcome))
                result.needs_data += [
                    NeedsData(email, name, index + 1, lacks.field, lacks.template)
                    for email, key in keyed
                    if (lacks := lacking.get(key)) is not None
                ]
        later = [
            *_check_rule_replies(data, settings, templates),
            *_check_nurture(data, settings, templates),
        ]
        result.failures += [
            f for f in later if look_for_placeholders or PLACEHOLDER not in f.problem
        ]
    return result


def _representatives(
    session: Session, data: ContactData, segment: str
) -> tuple[list[tuple[str, _FieldSet]], dict[_FieldSet, tuple[str, Mapping[str, object]]]]:
    """Each contact of ``segment`` with its field set, and each set's first contact with
    its data (the sample contact for a segment with none). Sets come in the order of their
    first contact, so a failure names the contact a render of every contact would name."""
    members = data.members(segment)
    if not members:
        sample = f"{SYNTHETIC_CONTACT['email']} (sample)"
        standard = [SYNTHETIC_CONTACT.get(name) for name in CONTACT_FIELDS]
        key = _field_set(standard, SYNTHETIC_CONTACT["tags"], {})
        return [(sample, key)], {key: (sample, SYNTHETIC_CONTACT)}
    first: dict[_FieldSet, _Member] = {}
    for member in members:
        first.setdefault(member.fields, member)
    ids = [m.id for m in first.values()]
    by_id: dict[int, dict[str, object]] = {}
    for chunk in in_chunks(ids):
        rows = session.scalars(select(ContactRow).where(ContactRow.id.in_(chunk)))
        by_id.update((row.id, template_fields(row)) for row in rows)
    return (
        [(m.email, m.fields) for m in members],
        {key: (m.email, by_id[m.id]) for key, m in first.items()},
    )


def _check_step(
    data: ContactData,
    settings: Settings,
    templates: TemplateSet,
    segment: str,
    index: int,
    fields: Mapping[str, object],
    look_for_placeholders: bool,
) -> _Lacks | str | None:
    """Render step ``index`` of ``segment`` for one contact, the first of its field set:
    the field it lacks, the template's problem, or None.

    The placeholder rule asks whether the template's text or the config says ``TODO:``, not
    whether a message does: a contact's own "TODO: call back" shows in its message and is no
    placeholder. So the message is searched for ``TODO:`` and, only if it is found and this
    contact's data says "TODO" (rare), rendered again with those lowercased
    (``_placeholder_is_not_the_contacts``); what is left is the template's or the config's.
    That answer doesn't depend on whose values fill the fields (but through a value branch,
    see the module docstring), so the set's first contact gives it for all: the others,
    with or without a TODO in their notes, would get the same one, and none is rendered."""
    step = settings.segments[segment].sequence[index]
    context = template_context(
        settings, segment, fields, step_number=index + 1, template=step.template
    )
    needs_subject = index == 0 or not step.thread
    try:
        rendered = templates.render(segment, step.template, context, needs_subject=needs_subject)
    except MissingContactField as exc:
        if data.is_known(segment, exc.field):
            return _Lacks(exc.field, exc.template)
        return str(exc)  # a field nobody has is the template's error
    except TemplateProblem as exc:
        return str(exc)
    if (
        look_for_placeholders
        and _has_placeholder(rendered.subject, rendered.body)
        and _placeholder_is_not_the_contacts(
            templates, settings, segment, index, needs_subject, fields
        )
    ):
        return f"{rendered.template}: the message still says {PLACEHOLDER}"
    return None


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
