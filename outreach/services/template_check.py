"""The templates check: every template a segment can send renders for every contact of it.

Nothing is sent, and the daemon does not start, while it fails (``require_templates``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.errors import ConfigError, TemplateProblem
from outreach.mail.compose import template_context
from outreach.mail.templates import TemplateSet
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


@dataclass(frozen=True)
class TemplateFailure:
    """One template that can't be rendered for one contact."""

    segment: str
    step: int
    contact: str
    problem: str

    def __str__(self) -> str:
        return f"{self.problem} (segment {self.segment}, step {self.step}, contact {self.contact})"


def check_templates(
    store: Store, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Render every template each segment's sequence uses, for every contact of that segment
    (or a sample contact when it has none); every failure is returned, none raised."""
    failures: list[TemplateFailure] = []
    seen: set[tuple[str, int, str]] = set()
    with store.session() as session:
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
                        templates.render(
                            name,
                            step.template,
                            context,
                            needs_subject=index == 0 or not step.thread,
                        )
                    except TemplateProblem as exc:
                        key = (name, index, str(exc))
                        # A broken file fails for everyone: once per step, not per contact.
                        if key in seen and "undefined" not in exc.problem:
                            continue
                        seen.add(key)
                        failures.append(TemplateFailure(name, index + 1, email, str(exc)))
        failures += _check_rule_replies(session, settings, templates)
        failures += _check_nurture(session, settings, templates)
    return failures


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
    """Render a message that starts a conversation (so it needs a Subject) for the segment's
    first contact, or a sample one; the failure, if it fails."""
    row = session.scalars(select(ContactRow).where(ContactRow.segment == segment)).first()
    fields = template_fields(row) if row is not None else SYNTHETIC_CONTACT
    email = row.email if row is not None else f"{SYNTHETIC_CONTACT['email']} (sample)"
    context = template_context(settings, segment, fields, step_number=0, template=template)
    try:
        templates.render(segment, template, context, needs_subject=True)
    except TemplateProblem as exc:
        return TemplateFailure(segment, 0, email, str(exc))
    return None


def require_templates(
    store: Store, settings: Settings, templates: TemplateSet, *, consequence: str | None
) -> None:
    """Raise ConfigError listing every failure (and ``consequence``, a last line saying what
    the failure stops), if any template fails to render."""
    failures = check_templates(store, settings, templates)
    if failures:
        raise ConfigError([*map(str, failures), *([consequence] if consequence else [])])
