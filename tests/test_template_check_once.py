"""The templates check renders each step once per set of non-empty fields among a segment's
contacts, for the first contact of the set, and finds what rendering every contact would:
each contact lacking a field by its own address, a template's error once per step naming a
contact, and a TODO in a contact's notes no placeholder."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings, load_config
from outreach.mail.templates import RenderedMessage, TemplateSet
from outreach.services import template_check
from outreach.services.contacts import import_contacts, template_fields
from outreach.services.template_check import ContactData, TemplateCheck, check_templates
from outreach.store.database import Store, open_store
from outreach.store.models import ContactRow
from tests.configs import edit_config
from tests.conftest import ROOT

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
# Two psychiatrists without an organization (one set), a teacher with a TODO in her own
# notes, teachers without notes or a grade level (custom fields), two clergy of two sets.
MIXED = (
    "email,first_name,last_name,title,organization,segment,notes,grade_level\n"
    "alma@nb.example.com,Alma,Reyes,,North Bay,psychiatrist,,\n"
    "jonah@nb.example.com,Jonah,Whitfield,,,psychiatrist,,\n"
    "kay@nb.example.com,Kay,Ito,,,psychiatrist,,\n"
    "lee@nb.example.com,Lee,Park,,South Bay,psychiatrist,,\n"
    "tom@lm.example.org,Tom,,,,teacher,TODO: call back,7\n"
    "ann@lm.example.org,Ann,,,,teacher,Met at the fair,\n"
    "bob@lm.example.org,Bob,,,,teacher,,8\n"
    "eve@lm.example.org,Eve,,,,teacher,Met at the fair,\n"
    "ari@bethel.example.org,Ari,Feldman,Rabbi,Beth El,clergy,,\n"
    "mo@masjid.example.org,Mo,,,,clergy,,\n"
)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: no {old!r}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped templates, using the organization (psychiatrist intro), the custom notes
    (teacher intro) and grade level (teacher follow-up 1), and a field nobody has (clergy
    follow-up 2: the template's error)."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    edit(
        folder / "psychiatrist" / "intro.txt.j2",
        "{{ segment.offer }}",
        "{{ segment.offer }} ({{ contact.organization }})",
    )
    edit(
        folder / "teacher" / "intro.txt.j2", "{{ greeting }}", "{{ greeting }} {{ contact.notes }}"
    )
    edit(
        folder / "teacher" / "follow_up_1.txt.j2",
        "{{ greeting }}",
        "{{ greeting }} Grade {{ contact.grade_level }}.",
    )
    edit(
        folder / "clergy" / "follow_up_2.txt.j2",
        "{{ greeting }}",
        "{{ greeting }} {{ contact.denomination }}",
    )
    monkeypatch.setenv("OUTREACH_TEMPLATES__DIR", str(folder))
    return folder


class Practice:
    """The example config with the templates above and ``contacts`` imported."""

    def __init__(self, config: Path, contacts: str) -> None:
        self.settings: Settings = load_config(config)
        self.store: Store = open_store(self.settings.database_url)
        self.templates = TemplateSet(self.settings.templates.dir)
        import_contacts(
            self.store,
            self.settings.the_pipeline,
            list(self.settings.segments),
            contacts.encode(),
            source="c.csv",
            now=T0,
        )

    def check(self) -> TemplateCheck:
        return check_templates(self.store, self.settings, self.templates)


@pytest.fixture
def practice(config_file: Path, templates: Path) -> Iterator[Practice]:
    p = Practice(config_file, MIXED)
    yield p
    p.store.close()


def every_contact_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each contact a set of its own: the check then renders every contact of every
    segment for every step, as it did before it grouped them."""
    grouped = template_check._representatives

    def one_set_each(
        session: Session, data: ContactData, segment: str
    ) -> tuple[list[tuple[str, Any]], dict[Any, tuple[str, Mapping[str, object]]]]:
        query = select(ContactRow).where(ContactRow.segment == segment).order_by(ContactRow.id)
        rows = session.scalars(query).all()
        if not rows:
            return grouped(session, data, segment)
        keyed = [(row.email, row.id) for row in rows]
        return keyed, {row.id: (row.email, template_fields(row)) for row in rows}

    monkeypatch.setattr(template_check, "_representatives", one_set_each)


def findings(check: TemplateCheck) -> tuple[list[str], list[str]]:
    return [str(f) for f in check.failures], [str(n) for n in check.needs_data]


class TestSameFindingsAsEveryContact:
    def test_a_mixed_segment_set(self, practice: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
        """Missing standard and custom fields, a TODO in one contact's notes, a template's
        error: the same findings, in the same order, as rendering every contact."""
        grouped = practice.check()
        assert [(n.contact, n.segment, n.step, n.field) for n in grouped.needs_data] == [
            ("jonah@nb.example.com", "psychiatrist", 1, "organization"),
            ("kay@nb.example.com", "psychiatrist", 1, "organization"),  # not only the first
            ("bob@lm.example.org", "teacher", 1, "notes"),
            ("ann@lm.example.org", "teacher", 2, "grade_level"),
            ("eve@lm.example.org", "teacher", 2, "grade_level"),
        ]
        assert [str(f) for f in grouped.failures] == [
            "clergy/follow_up_2.txt.j2, line 2: undefined variable 'denomination' "
            "(segment clergy, step 3, contact ari@bethel.example.org)"
        ]  # once for the step, though Ari and Mo are two sets; Tom's "TODO: call back" is his
        every_contact_rendered(monkeypatch)
        assert findings(practice.check()) == findings(grouped)

    def test_a_todo_in_the_templates_text_beside_a_contacts_own(
        self, practice: Practice, templates: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Tom, the first of his set, has "TODO: call back" in his notes: the intro's own
        TODO is still found with him, once, as rendering every teacher finds it."""
        edit(
            templates / "teacher" / "intro.txt.j2",
            "{{ contact.notes }}",
            "{{ contact.notes }} TODO: a line",
        )
        grouped = practice.check()
        assert [str(f) for f in grouped.failures if "TODO" in str(f)] == [
            "teacher/intro.txt.j2: the message still says TODO "
            "(segment teacher, step 1, contact tom@lm.example.org)"
        ]
        every_contact_rendered(monkeypatch)
        assert findings(practice.check()) == findings(grouped)

    def test_a_todo_in_the_config_is_said_once_by_its_key(
        self, practice: Practice, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        edit_config(config_file, {"segments.teacher.offer": "TODO: an offer"})
        practice.settings = load_config(config_file)
        grouped = practice.check()
        assert "segments.teacher.offer: still 'TODO: an offer'" in str(grouped.failures[0])
        assert not any("the message still says" in f for f in findings(grouped)[0])
        every_contact_rendered(monkeypatch)
        assert findings(practice.check()) == findings(grouped)

    def test_every_contact_of_a_set_is_listed_when_its_first_is_not_in_the_order(
        self, config_file: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Sets interleaved (with, without, with, without an organization): each contact is
        listed in the segment's order, with its own address."""
        practice = Practice(
            config_file,
            "email,first_name,organization,segment\n"
            + "".join(
                f"p{i}@nb.example.com,P{i},{'North Bay' if i % 2 else ''},psychiatrist\n"
                for i in range(6)
            ),
        )
        try:
            grouped = practice.check()
            assert [n.contact for n in grouped.needs_data] == [
                "p0@nb.example.com",
                "p2@nb.example.com",
                "p4@nb.example.com",
            ]
            every_contact_rendered(monkeypatch)
            assert findings(practice.check()) == findings(grouped)
        finally:
            practice.store.close()


class TestRendersOncePerSet:
    def test_two_thousand_contacts_of_two_sets_render_two_times_the_steps(
        self, config_file: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        practice = Practice(
            config_file,
            "email,first_name,last_name,organization,segment\n"
            + "".join(
                f"p{i}@org{i}.example.com,P{i},Q{i},{f'Org {i}' if i % 2 else ''},psychiatrist\n"
                for i in range(2000)
            ),
        )
        renders: Counter[tuple[str, str]] = Counter()
        render = TemplateSet.render

        def counted(
            self: TemplateSet,
            segment: str,
            name: str,
            context: Mapping[str, Any],
            *,
            needs_subject: bool,
        ) -> RenderedMessage:
            renders[segment, name] += 1
            return render(self, segment, name, context, needs_subject=needs_subject)

        monkeypatch.setattr(TemplateSet, "render", counted)
        try:
            check = practice.check()
        finally:
            practice.store.close()
        # (the other segments' templates above fail for the sample contact: not this one's)
        assert [f for f in check.failures if f.segment == "psychiatrist"] == []
        assert len(check.needs_data) == 1000  # each one without an organization, by address
        steps = [step.template for step in practice.settings.segments["psychiatrist"].sequence]
        assert len(steps) == 3
        assert {name: renders["psychiatrist", name] for name in steps} == dict.fromkeys(steps, 2)
