"""One contact missing personalization holds only that contact: it is marked "needs data"
with the field, skipped, and everyone else is sent (aiosmtpd and Dovecot); a template's own
error still stops all sending, and so does a TODO left in the config."""

from __future__ import annotations

import asyncio
import email
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.config import Settings, load_config
from outreach.errors import ConfigError
from outreach.runtime.parts import build_parts
from outreach.services.dispatch import Dispatcher, DispatchReport
from outreach.services.template_check import check_templates, require_templates
from outreach.store.database import Store, open_store
from outreach.store.models import ContactRow
from tests.configs import edit_config
from tests.conftest import ROOT, Run
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
CSV = (
    "email,first_name,last_name,title,organization,segment\n"
    "alma@nb.example.com,Alma,Reyes,,North Bay,psychiatrist\n"
    "jonah@nb.example.com,Jonah,Whitfield,,,psychiatrist\n"  # no organization
    "ari@bethel.example.org,Ari,Feldman,Rabbi,Beth El,clergy\n"
    "office@lm.example.org,,,,Lincoln Middle,teacher\n"  # no name at all
)
EVERYONE_ELSE = {"alma@nb.example.com", "ari@bethel.example.org", "office@lm.example.org"}


class Practice:
    """The example practice on the test servers, its psychiatrist intro naming the contact's
    organization, with the contacts above imported."""

    def __init__(self, config: Path, contacts: str = CSV) -> None:
        from outreach.services.contacts import import_contacts

        self.config = config
        self.settings: Settings = load_config(config)
        self.store: Store = open_store(self.settings.database_url)
        self.dispatcher: Dispatcher = build_parts(self.settings, self.store).dispatcher
        segments = list(self.settings.segments)
        pipeline = self.settings.the_pipeline
        data = contacts.encode()
        import_contacts(self.store, pipeline, segments, data, source="c.csv", now=T0)

    def run(self, now: datetime) -> DispatchReport:
        return asyncio.run(self.dispatcher.run_pass(now))

    def contact(self, address: str) -> ContactRow:
        with self.store.session() as session:
            row = session.scalars(select(ContactRow).where(ContactRow.email == address)).one()
            session.expunge(row)
            return row

    def set_organization(self, address: str, value: str) -> None:
        with self.store.session() as session:
            row = session.scalars(select(ContactRow).where(ContactRow.email == address)).one()
            row.organization = value


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    intro = folder / "psychiatrist" / "intro.txt.j2"
    text = intro.read_text()
    intro.write_text(
        text.replace("{{ segment.offer }}", "{{ segment.offer }} ({{ contact.organization }})")
    )
    monkeypatch.setenv("OUTREACH_TEMPLATES__DIR", str(folder))
    return folder


@pytest.fixture
def practice(outbound_config: Path, templates: Path) -> Iterator[Practice]:
    p = Practice(outbound_config)
    yield p
    p.store.close()


def received(server: SmtpServer) -> dict[str, str]:
    """Each recipient's message body."""
    bodies = {}
    for envelope in server.received:
        message = email.message_from_bytes(envelope.data)
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        bodies[envelope.rcpt_tos[0]] = payload.decode()
    return bodies


class TestOneContactWaits:
    def test_the_others_are_sent_and_the_one_is_marked_with_its_field(
        self, practice: Practice, smtp_sink: SmtpServer
    ) -> None:
        report = practice.run(T0)
        assert {line.email for line in report.sent} == EVERYONE_ELSE
        assert report.lacking == {"jonah@nb.example.com": "organization"}
        assert report.problems == []  # a contact's missing data is not a problem of the pass
        said = [sentence for _level, sentence in report.sentences(subjects=True)]
        assert any(
            s.startswith("jonah@nb.example.com: not sent, needs data: its templates use "
                         "organization") for s in said
        )  # fmt: skip
        assert practice.contact("jonah@nb.example.com").needs_data == "organization"
        assert practice.contact("jonah@nb.example.com").stage == "new"
        assert practice.contact("alma@nb.example.com").needs_data is None
        bodies = received(smtp_sink)
        assert "(North Bay)" in bodies["alma@nb.example.com"]
        assert bodies["ari@bethel.example.org"].startswith("Dear Rabbi Feldman,")
        assert bodies["office@lm.example.org"].startswith("Hello,")
        assert bodies["alma@nb.example.com"].startswith("Dear Dr. Reyes,")

    def test_status_counts_it_and_a_stage_change_clears_the_mark(
        self, practice: Practice, smtp_sink: SmtpServer, cli: Callable[..., Run]
    ) -> None:
        practice.run(T0)
        status = cli("status", "--json", "--now", T0.isoformat())
        assert json.loads(status.stdout)["needs_data"] == 1
        assert (
            "needs data:    1 contact lacks a field its templates use"
            in cli("status", "--now", T0.isoformat()).stdout
        )
        moved = cli("stage", "set", "jonah@nb.example.com", "do_not_contact")
        assert moved.exit_code == 0, moved.output
        assert practice.contact("jonah@nb.example.com").needs_data is None  # nothing to send

    def test_it_waits_quietly_and_goes_out_once_the_data_is_added(
        self, practice: Practice, smtp_sink: SmtpServer
    ) -> None:
        practice.run(T0)
        again = practice.run(T0 + timedelta(minutes=1))
        assert again.sent == [] and again.lacking == {}  # told once, not every minute
        assert practice.contact("jonah@nb.example.com").needs_data == "organization"
        practice.set_organization("jonah@nb.example.com", "North Bay Psychiatry")
        later = practice.run(T0 + timedelta(minutes=2))
        assert [line.email for line in later.sent] == ["jonah@nb.example.com"]
        assert practice.contact("jonah@nb.example.com").needs_data is None
        assert "(North Bay Psychiatry)" in received(smtp_sink)["jonah@nb.example.com"]

    def test_a_waiting_contact_never_takes_the_others_places(
        self,
        outbound_config: Path,
        templates: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("OUTREACH_SENDING__MAX_PER_HOUR", "1")
        practice = Practice(outbound_config)
        try:
            sent: set[str] = set()
            for hour in range(5):  # one place an hour; the one waiting may cost one pass
                sent |= {
                    line.email for line in practice.run(T0 + timedelta(minutes=61 * hour)).sent
                }
            assert sent == EVERYONE_ELSE
            assert practice.contact("jonah@nb.example.com").needs_data == "organization"
        finally:
            practice.store.close()

    def test_a_dry_run_marks_nothing(self, practice: Practice) -> None:
        report = asyncio.run(practice.dispatcher.run_pass(T0, dry_run=True))
        assert len(report.sent) == 4
        assert practice.contact("jonah@nb.example.com").needs_data is None


class TestTemplatesCheck:
    def test_lists_the_contact_with_its_field_and_does_not_fail(self, practice: Practice) -> None:
        waiting = require_templates(
            practice.store, practice.settings, practice.dispatcher.templates, consequence=None
        )
        assert [(w.contact, w.field, w.step) for w in waiting] == [
            ("jonah@nb.example.com", "organization", 1)
        ]
        assert str(waiting[0]) == (
            "jonah@nb.example.com: needs organization (psychiatrist/intro.txt.j2, segment "
            "psychiatrist, step 1); add it with "
            "`outreach contacts edit jonah@nb.example.com --set organization=...`"
        )

    def test_a_variable_that_exists_for_nobody_still_blocks_sending(
        self, practice: Practice, templates: Path
    ) -> None:
        intro = templates / "teacher" / "intro.txt.j2"
        intro.write_text(intro.read_text().replace("{{ greeting }}", "{{ contact.grade_level }}"))
        with pytest.raises(ConfigError) as caught:
            require_templates(
                practice.store, practice.settings, practice.dispatcher.templates, consequence=None
            )
        assert (
            "teacher/intro.txt.j2, line 3: undefined variable 'grade_level' "
            "(segment teacher, step 1, contact office@lm.example.org)"
        ) in caught.value.problems

    def test_a_custom_field_some_contacts_have_is_contact_data(
        self,
        outbound_config: Path,
        templates: Path,
    ) -> None:
        intro = templates / "teacher" / "intro.txt.j2"
        intro.write_text(
            intro.read_text().replace("{{ greeting }}", "{{ greeting }} {{ contact.grade_level }}")
        )
        practice = Practice(
            outbound_config,
            "email,first_name,segment,grade_level\n"
            "tom@lm.example.org,Tom,teacher,7\n"
            "ann@lm.example.org,Ann,teacher,\n",
        )
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert check.failures == []
            assert [(w.contact, w.field) for w in check.needs_data] == [
                ("ann@lm.example.org", "grade_level")
            ]
        finally:
            practice.store.close()

    def test_a_standard_field_no_contact_of_the_segment_has_is_the_templates_error(
        self, outbound_config: Path, templates: Path, cli: Callable[..., Run]
    ) -> None:
        """The psychiatrist intro says "({{ contact.organization }})", and the psychiatrists
        came without an organization column: not two contacts needing data (the daemon would
        start and send them nothing, silently), but the template's error, said once."""
        practice = Practice(
            outbound_config,
            "email,first_name,last_name,segment\n"
            "alma@nb.example.com,Alma,Reyes,psychiatrist\n"
            "jonah@nb.example.com,Jonah,Whitfield,psychiatrist\n"
            "ari@bethel.example.org,Ari,Feldman,clergy\n",
        )
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert check.needs_data == []
            assert [str(f) for f in check.failures] == [
                "psychiatrist/intro.txt.j2, line 11: undefined variable 'organization' "
                "(segment psychiatrist, step 1, contact alma@nb.example.com)"
            ]
            checked = cli("templates", "check")
            assert checked.exit_code == 2
            assert "line 11: undefined variable 'organization'" in checked.stderr
            report = practice.run(T0)  # a pass started anyway: not sent, and said so
            assert [line.email for line in report.sent] == ["ari@bethel.example.org"]
            assert report.lacking == {}
            assert len(report.problems) == 2
            assert practice.contact("alma@nb.example.com").needs_data is None
            # Once one psychiatrist has an organization, it is contact data again.
            practice.set_organization("alma@nb.example.com", "North Bay")
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert check.failures == []
            assert [(w.contact, w.field) for w in check.needs_data] == [
                ("jonah@nb.example.com", "organization")
            ]
        finally:
            practice.store.close()

    def test_a_segment_with_no_contacts_is_checked_with_every_standard_field(
        self, outbound_config: Path, templates: Path
    ) -> None:
        """No contact yet (the sample stands in): a standard field is fine, tags and time
        zone too, and nobody "needs data"; a custom field nobody has is still an error."""
        intro = templates / "clergy" / "intro.txt.j2"
        intro.write_text(
            intro.read_text().replace(
                "{{ greeting }}",
                "{{ greeting }} {{ contact.organization }} {{ contact.timezone }} "
                "{{ contact.tags | join(', ') }}",
            )
        )
        practice = Practice(outbound_config, "email,first_name,segment\n")
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert (check.failures, check.needs_data) == ([], [])
            intro.write_text(
                intro.read_text().replace("{{ greeting }}", "{{ contact.denomination }}")
            )
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert [f.problem for f in check.failures] == [
                "clergy/intro.txt.j2, line 3: undefined variable 'denomination'"
            ]
        finally:
            practice.store.close()

    def test_a_nurture_template_using_a_field_nobody_has_fails(
        self, outbound_config: Path, templates: Path
    ) -> None:
        """The nurture check-in is rendered for a sample contact with only the standard
        fields its segment's contacts have: a field none has fails there too."""
        nurture = templates / "psychiatrist" / "nurture.txt.j2"
        nurture.write_text(
            nurture.read_text().replace("{{ greeting }}", "{{ greeting }} {{ contact.title }}")
        )
        practice = Practice(outbound_config)  # no psychiatrist has a title
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert [str(f) for f in check.failures] == [
                "psychiatrist/nurture.txt.j2, line 3: undefined variable 'title' (nurture) "
                "(segment psychiatrist, step 0, contact sample.contact@example.com (sample))"
            ]
        finally:
            practice.store.close()

    def test_a_todo_in_the_config_stops_everything(
        self, outbound_config: Path, cli: Callable[..., Run]
    ) -> None:
        edit_config(outbound_config, {"segments.clergy.offer": "TODO: an offer"})
        checked = cli("templates", "check")
        assert checked.exit_code == 2
        assert "segments.clergy.offer: still 'TODO: an offer'" in checked.stderr
        send = cli("send-due", "--once")
        assert send.exit_code == 2 and "nothing is sent" in send.stderr


class TestTodoInContactData:
    """A TODO in one contact's data (a Google "Notes" cell saying "TODO: call back"), printed
    by a template, is that contact's data: it stops nothing."""

    @pytest.fixture
    def notes_template(self, templates: Path) -> Path:
        intro = templates / "teacher" / "intro.txt.j2"
        intro.write_text(
            intro.read_text().replace("{{ greeting }}", "{{ greeting }} {{ contact.notes }}")
        )
        return intro

    def test_it_stops_nothing(
        self, outbound_config: Path, notes_template: Path, smtp_sink: SmtpServer
    ) -> None:
        practice = Practice(
            outbound_config,
            "email,first_name,segment,notes\n"
            "tom@lm.example.org,Tom,teacher,TODO: call back\n"
            "ann@lm.example.org,Ann,teacher,Met at the fair\n",
        )
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert (check.failures, check.needs_data) == ([], [])
            report = practice.run(T0)
            assert {line.email for line in report.sent} == {
                "tom@lm.example.org",
                "ann@lm.example.org",
            }
            assert "TODO: call back" in received(smtp_sink)["tom@lm.example.org"]
        finally:
            practice.store.close()

    def test_a_todo_in_the_templates_own_text_still_stops_everything(
        self, outbound_config: Path, notes_template: Path
    ) -> None:
        notes_template.write_text(
            notes_template.read_text().replace(
                "{{ contact.notes }}", "{{ contact.notes }} TODO: a line"
            )
        )
        practice = Practice(
            outbound_config,
            "email,first_name,segment,notes\ntom@lm.example.org,Tom,teacher,TODO: call back\n",
        )
        try:
            check = check_templates(
                practice.store, practice.settings, practice.dispatcher.templates
            )
            assert [f.problem for f in check.failures] == [
                "teacher/intro.txt.j2: the message still says TODO"
            ]
        finally:
            practice.store.close()
