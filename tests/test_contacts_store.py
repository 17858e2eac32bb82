"""Contact services on a real store, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from outreach.domain.fields import erased_key
from outreach.domain.pipeline import ExtraStage, Pipeline
from outreach.errors import ConfigError, ContactNotFound, ImportProblems, InvalidStage, StoreError
from outreach.services import contacts
from outreach.services.removal import remove_contact
from outreach.store.database import Store, open_store
from outreach.store.ledger import suppress
from outreach.store.models import (
    ContactRow,
    DomainPauseRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
    StateRow,
    SuppressionRow,
)

PIPELINE = Pipeline.with_extra([ExtraStage("meeting", "engaged")])
SEGMENTS = ["psychiatrist", "teacher", "clergy"]
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 3, 9, 15, tzinfo=UTC)

CSV = (
    "email,first_name,last_name,title,organization,segment,timezone,tags,years\n"
    "alma@nb.example.com,Alma,Reyes,Dr.,North Bay,psychiatrist,America/New_York,a; b,12\n"
    "tom@lm.example.org,Tom,Beaulieu,Mr.,Lincoln Middle,teacher,,,\n"
    "grace@stm.example.org,Grace,Okafor,Pastor,St. Mark's,clergy,America/Chicago,,20\n"
)


def do_import(store: Store, text: str, **kwargs: object) -> contacts.ImportSummary:
    return contacts.import_contacts(
        store,
        PIPELINE,
        SEGMENTS,
        text.encode(),
        source="test.csv",
        now=T0,
        **kwargs,  # type: ignore[arg-type]
    )


def count(store: Store, model: type) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


class TestImport:
    def test_imports_every_row_with_its_history(self, store: Store) -> None:
        summary = do_import(store, CSV)
        assert (summary.rows, summary.created) == (3, 3)
        assert summary.by_segment == {"psychiatrist": 1, "teacher": 1, "clergy": 1}
        history = contacts.show_contact(store, "alma@nb.example.com")
        assert history.contact.tags == ["a", "b"]
        assert history.contact.custom == {"years": "12"}
        assert history.contact.created_at == T0
        (change,) = history.stage_changes
        assert (change.from_stage, change.to_stage, change.reason) == (
            None,
            "new",
            "imported from test.csv line 2",
        )

    def test_one_bad_row_imports_nothing(self, store: Store) -> None:
        bad = CSV + "nobody,,,,,teacher,,,\n"
        with pytest.raises(ImportProblems) as caught:
            do_import(store, bad)
        assert caught.value.problems[0].startswith("line 5, column 1 (email)")
        assert count(store, ContactRow) == 0 and count(store, StageChangeRow) == 0

    def test_existing_addresses_are_skipped_whatever_their_case(self, store: Store) -> None:
        do_import(store, CSV)
        again = do_import(store, CSV.replace("alma@nb", "ALMA@nb"))
        assert (again.created, again.skipped_existing) == (0, 3)
        assert count(store, ContactRow) == 3

    def test_update_changes_only_the_files_columns(self, store: Store) -> None:
        do_import(store, CSV)
        summary = do_import(
            store,
            "email,organization,segment,office\n"
            "alma@nb.example.com,North Bay Psychiatry,psychiatrist,Suite 2\n"
            "tom@lm.example.org,Lincoln Middle,teacher,\n"
            "new@x.example.com,New Org,clergy,\n",
            update=True,
        )
        assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 1)
        alma = contacts.show_contact(store, "alma@nb.example.com").contact
        assert alma.organization == "North Bay Psychiatry"
        assert alma.first_name == "Alma"  # not in the file: kept
        assert alma.custom == {"years": "12", "office": "Suite 2"}

    def test_update_records_a_stage_change(self, store: Store) -> None:
        do_import(store, CSV)
        do_import(store, "email,segment,stage\ntom@lm.example.org,teacher,engaged\n", update=True)
        changes = contacts.show_contact(store, "tom@lm.example.org").stage_changes
        assert [(c.from_stage, c.to_stage) for c in changes] == [(None, "new"), ("new", "engaged")]
        assert changes[1].reason == "updated from test.csv line 2"

    def test_dry_run_changes_nothing(self, store: Store) -> None:
        summary = do_import(store, CSV, dry_run=True)
        assert summary.created == 3 and summary.dry_run
        assert count(store, ContactRow) == 0
        do_import(store, CSV)
        summary = do_import(store, CSV.replace("North Bay", "South Bay"), update=True, dry_run=True)
        assert summary.updated == 1
        assert (
            contacts.show_contact(store, "alma@nb.example.com").contact.organization == "North Bay"
        )

    def test_a_large_file_imports_in_one_go(self, store: Store) -> None:
        rows = "".join(f"p{i}@x{i % 50}.example.com,P{i},teacher\n" for i in range(3000))
        summary = do_import(store, "email,first_name,segment\n" + rows)
        assert summary.created == 3000
        assert count(store, ContactRow) == 3000 and count(store, StageChangeRow) == 3000


class TestListAndShow:
    def test_list_filters_by_segment_and_stage(self, store: Store) -> None:
        do_import(store, CSV)
        contacts.set_stage(store, PIPELINE, "tom@lm.example.org", "engaged", now=T1)
        assert [c.email for c in contacts.list_contacts(store, segment="teacher")] == [
            "tom@lm.example.org"
        ]
        assert [c.email for c in contacts.list_contacts(store, stage="new")] == [
            "grace@stm.example.org",
            "alma@nb.example.com",
        ]
        assert contacts.count_by_segment_and_stage(store) == {
            ("psychiatrist", "new"): 1,
            ("clergy", "new"): 1,
            ("teacher", "engaged"): 1,
        }

    def test_unknown_address(self, store: Store) -> None:
        with pytest.raises(ContactNotFound, match=r"nobody@x\.example\.com"):
            contacts.show_contact(store, "nobody@x.example.com")

    def test_lookup_ignores_case(self, store: Store) -> None:
        do_import(store, CSV)
        assert contacts.show_contact(store, "Grace@STM.example.org").contact.first_name == "Grace"


class TestStagesAndReferrals:
    def test_manual_change_keeps_the_note(self, store: Store) -> None:
        do_import(store, CSV)
        change = contacts.set_stage(
            store, PIPELINE, "alma@nb.example.com", "meeting", now=T1, note="lunch on Friday"
        )
        assert change is not None and change.reason == "set by hand: lunch on Friday"
        history = contacts.show_contact(store, "alma@nb.example.com")
        assert history.contact.stage == "meeting"
        assert history.stage_changes[-1].at == T1

    def test_setting_the_same_stage_records_nothing(self, store: Store) -> None:
        do_import(store, CSV)
        assert contacts.set_stage(store, PIPELINE, "alma@nb.example.com", "new", now=T1) is None
        assert len(contacts.show_contact(store, "alma@nb.example.com").stage_changes) == 1

    def test_unknown_stage_is_refused(self, store: Store) -> None:
        do_import(store, CSV)
        with pytest.raises(InvalidStage):
            contacts.set_stage(store, PIPELINE, "alma@nb.example.com", "friends", now=T1)

    def test_referral_moves_to_referring_once(self, store: Store) -> None:
        do_import(store, CSV)
        first = contacts.add_referral(
            store,
            PIPELINE,
            "grace@stm.example.org",
            received_on=date(2026, 3, 1),
            now=T1,
            note="by phone",
        )
        second = contacts.add_referral(
            store, PIPELINE, "grace@stm.example.org", received_on=date(2026, 3, 3), now=T1
        )
        assert first is not None and first.to_stage == "referring"
        assert second is None
        history = contacts.show_contact(store, "grace@stm.example.org")
        assert [r.received_on for r in history.referrals] == [date(2026, 3, 1), date(2026, 3, 3)]
        assert history.referrals[0].note == "by phone"


class TestExport:
    def test_export_reimports_losslessly(self, store: Store, tmp_path: object) -> None:
        do_import(store, CSV)
        contacts.set_stage(store, PIPELINE, "tom@lm.example.org", "meeting", now=T1)
        out = io.StringIO()
        assert contacts.export_contacts(store, out) == 3  # type: ignore[arg-type]
        other = open_store(f"sqlite:///{tmp_path}/copy.sqlite3")
        try:
            contacts.import_contacts(
                other, PIPELINE, SEGMENTS, out.getvalue().encode(), source="export.csv", now=T1
            )

            def essence(store: Store) -> list[dict[str, object]]:
                keep = (
                    "email",
                    "first_name",
                    "last_name",
                    "title",
                    "organization",
                    "segment",
                    "timezone",
                    "tags",
                    "custom",
                    "stage",
                )
                return [{k: c.to_json()[k] for k in keep} for c in contacts.list_contacts(store)]

            assert essence(other) == essence(store)
        finally:
            other.close()


class TestMigrations:
    def test_upgrade_is_idempotent(self, store: Store) -> None:
        assert store.current_revision() == Store.head_revision()
        before, after = store.upgrade()
        assert before == after == Store.head_revision()

    def test_timestamps_come_back_in_utc(self, store: Store) -> None:
        do_import(store, CSV)
        created = contacts.show_contact(store, "alma@nb.example.com").contact.created_at
        assert (
            created == T0
            and created.tzinfo is not None
            and created.utcoffset().total_seconds() == 0
        )  # type: ignore[union-attr]

    def test_upgrade_from_the_first_schema_keeps_contacts(self, database_url: str) -> None:
        from alembic import command

        from outreach.store.database import _alembic_config

        store = Store(database_url)
        try:
            with store.engine.begin() as connection:
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "0001")
                connection.exec_driver_sql(
                    "INSERT INTO contacts (email, email_key, segment, tags, custom, stage,"
                    " created_at, updated_at) VALUES ('a@x.example.com', 'a@x.example.com',"
                    " 'teacher', '[]', '{}', 'new', '2026-01-05 10:00:00', '2026-01-05 10:00:00')"
                )
            assert store.upgrade() == ("0001", Store.head_revision())
            with store.session() as session:
                row = session.scalars(select(ContactRow)).one()
                assert row.next_check_at == row.created_at
        finally:
            store.close()

    def test_a_newer_schema_is_refused_clearly(self, store: Store) -> None:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(StoreError, match="has schema '9999', which this version"):
            store.upgrade()

    def test_an_unreachable_database_is_one_sentence(self) -> None:
        with pytest.raises(StoreError, match=r"can't open the database .*:\*\*\*@127\.0\.0\.1"):
            open_store("postgresql+psycopg://me:pw-secret@127.0.0.1:1/none")

    def test_the_password_of_a_database_url_is_never_shown(self) -> None:
        with pytest.raises(StoreError) as caught:
            open_store("postgresql+psycopg://me:pw-secret@127.0.0.1:1/none")
        assert "pw-secret" not in str(caught.value)


NAMES = {
    "psychiatrist": "psychiatrist",
    "teacher": "teacher",
    "clergy": "clergy",
    "pastors": "clergy",
}


def add(store: Store, email: str, *fields: str, hold: bool = False) -> contacts.Contact:
    return contacts.add_contact(store, PIPELINE, NAMES, email, list(fields), now=T0, hold=hold)


def with_history(store: Store, email: str) -> int:
    """Give a contact a sent message and a reply; returns its id."""
    with store.session() as session:
        row = contacts.find_contact(session, email)
        session.add(
            OutboxRow(
                contact_id=row.id,
                step_index=0,
                template="intro",
                message_id=f"<intro-{row.id}@practice.example.com>",
                subject="Hello",
                state="sent",
                created_at=T0,
                updated_at=T0,
                sent_at=T0,
            )
        )
        session.add(
            InboundEventRow(
                message_key=f"<reply-{row.id}@x.example.com>",
                folder="INBOX",
                kind="reply",
                contact_id=row.id,
                received_at=T1,
            )
        )
        return row.id


def suppression_keys(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(SuppressionRow.email_key)))


class TestHold:
    def test_import_holds_only_the_contacts_it_creates(self, store: Store) -> None:
        do_import(store, CSV.split("grace@", maxsplit=1)[0])
        summary = do_import(store, CSV, hold=True)
        assert (summary.created, summary.held) == (1, 1)
        held = {c.email: c.held_since for c in contacts.list_contacts(store)}
        assert held == {
            "alma@nb.example.com": None,
            "tom@lm.example.org": None,
            "grace@stm.example.org": T0,
        }
        assert contacts.list_contacts(store)[0].waiting == "held"

    def test_waiting_names_the_missing_data(self, store: Store) -> None:
        do_import(store, CSV)
        with store.session() as session:
            contacts.find_contact(session, "tom@lm.example.org").needs_data = "first_name"
        tom = contacts.show_contact(store, "tom@lm.example.org").contact
        assert tom.waiting == "needs data: first_name"
        assert tom.to_json()["needs_data"] == "first_name"


class TestAdd:
    def test_adds_one_contact_with_its_history(self, store: Store) -> None:
        added = add(
            store,
            "Ruth@Temple.example.org",
            "segment=pastors",
            "first_name=Ruth",
            "title=Rabbi",
            "tags=board; choir",
            "years_in_practice=20",
            hold=True,
        )
        assert (added.email, added.segment, added.title, added.held_since) == (
            "Ruth@temple.example.org",
            "clergy",
            "Rabbi",
            T0,
        )
        assert added.tags == ["board", "choir"] and added.custom == {"years_in_practice": "20"}
        (change,) = contacts.show_contact(store, "ruth@temple.example.org").stage_changes
        assert (change.to_stage, change.reason) == ("new", "added by hand")

    def test_every_problem_is_listed_and_nothing_added(self, store: Store) -> None:
        with pytest.raises(ConfigError) as caught:
            add(store, "not-an-address", "segment=rabbis", "frist_name=Ann")
        assert caught.value.problems[0].startswith("not-an-address: 'not-an-address' is not")
        assert caught.value.problems[1].startswith("--set segment: unknown segment 'rabbis'")
        assert caught.value.problems[2] == (
            "--set unknown field 'frist_name'; did you mean 'first_name'?"
        )
        assert count(store, ContactRow) == 0

    def test_an_existing_address_is_refused(self, store: Store) -> None:
        do_import(store, CSV)
        with pytest.raises(ConfigError, match="already a contact"):
            add(store, "ALMA@nb.example.com", "segment=clergy")


class TestEdit:
    def test_sets_and_clears_fields_and_tries_the_contact_again(self, store: Store) -> None:
        do_import(store, CSV)
        with store.session() as session:
            row = contacts.find_contact(session, "tom@lm.example.org")
            row.needs_data, row.next_check_at = "first_name", None
        edited = contacts.edit_contact(
            store,
            NAMES,
            "tom@lm.example.org",
            ["first_name=Thomas", "title=", "segment=pastors", "office=Room 12", "tags=a"],
            now=T1,
        )
        assert edited.changes == {
            "first_name": ("Tom", "Thomas"),
            "title": ("Mr.", None),
            "segment": ("teacher", "clergy"),
            "office": (None, "Room 12"),
            "tags": ([], ["a"]),
        }
        tom = edited.contact
        assert (tom.needs_data, tom.updated_at, tom.custom) == (None, T1, {"office": "Room 12"})
        with store.session() as session:
            assert contacts.find_contact(session, "tom@lm.example.org").next_check_at == T1
        cleared = contacts.edit_contact(
            store, NAMES, "tom@lm.example.org", ["office="], now=T1
        ).contact
        assert cleared.custom == {}

    def test_setting_the_same_values_changes_nothing(self, store: Store) -> None:
        do_import(store, CSV)
        edited = contacts.edit_contact(
            store, NAMES, "alma@nb.example.com", ["first_name=Alma", "years=12"], now=T1
        )
        assert edited.changes == {} and edited.contact.updated_at == T0

    def test_unknown_address_and_bad_fields(self, store: Store) -> None:
        do_import(store, CSV)
        with pytest.raises(ContactNotFound):
            contacts.edit_contact(store, NAMES, "nobody@x.example.com", ["title=Dr."], now=T1)
        with pytest.raises(ConfigError) as caught:
            contacts.edit_contact(
                store, NAMES, "alma@nb.example.com", ["title=Prof.", "segment=nurses"], now=T1
            )
        assert caught.value.problems[0].startswith("--set segment: unknown segment 'nurses'")
        assert contacts.show_contact(store, "alma@nb.example.com").contact.title == "Dr."


class TestRemove:
    def test_removes_the_contact_and_its_messages_keeping_anonymous_events(
        self, store: Store
    ) -> None:
        do_import(store, CSV)
        with_history(store, "alma@nb.example.com")
        removed = remove_contact(store, "alma@nb.example.com", now=T1)
        assert (removed.messages, removed.suppressed, removed.forgotten) == (1, False, False)
        assert count(store, ContactRow) == 2 and count(store, OutboxRow) == 0
        assert count(store, StageChangeRow) == 2
        with store.session() as session:
            (event,) = session.scalars(select(InboundEventRow))
            assert event.contact_id is None
        # Not suppressed: it can come back.
        assert do_import(store, CSV).created == 1

    def test_an_unsubscribed_contact_stays_suppressed(self, store: Store) -> None:
        do_import(store, CSV)
        contacts.set_stage(store, PIPELINE, "tom@lm.example.org", "unsubscribed", now=T1)
        assert remove_contact(store, "tom@lm.example.org", now=T1).suppressed
        assert suppression_keys(store) == ["tom@lm.example.org"]
        summary = do_import(store, CSV)
        assert (summary.created, summary.skipped_suppressed, summary.skipped_existing) == (0, 1, 2)
        with pytest.raises(ConfigError, match="the address is suppressed"):
            add(store, "tom@lm.example.org", "segment=teacher")

    def test_unknown_address(self, store: Store) -> None:
        with pytest.raises(ContactNotFound):
            remove_contact(store, "nobody@x.example.com", now=T1)


class TestForget:
    def test_erases_everything_and_keeps_only_a_hash(self, store: Store) -> None:
        do_import(store, CSV)
        with_history(store, "grace@stm.example.org")
        contacts.add_referral(
            store, PIPELINE, "grace@stm.example.org", received_on=date(2026, 3, 1), now=T1
        )
        with store.session() as session:
            suppress(session, "grace@stm.example.org", "unsubscribed: grace@stm.example.org", T1)
        removed = remove_contact(store, "Grace@stm.example.org", now=T1, forget=True)
        assert (removed.messages, removed.inbound_events, removed.suppressed) == (1, 1, True)
        assert count(store, InboundEventRow) == 0 and count(store, ReferralRow) == 0
        assert count(store, OutboxRow) == 0 and count(store, StageChangeRow) == 2
        assert suppression_keys(store) == [erased_key("grace@stm.example.org")]
        with store.session() as session:
            reason = session.scalars(select(SuppressionRow.reason)).one()
        assert "grace" not in reason and reason == "erased at the owner's request 2026-03-03"

    def test_a_forgotten_address_is_never_imported_or_added_again(self, store: Store) -> None:
        do_import(store, CSV)
        remove_contact(store, "alma@nb.example.com", now=T1, forget=True)
        dry = do_import(store, CSV.replace("alma@nb", "ALMA@nb"), dry_run=True)
        assert (dry.created, dry.skipped_suppressed) == (0, 1)
        assert do_import(store, CSV).skipped_suppressed == 1
        with pytest.raises(ConfigError, match="erased at its owner's request"):
            add(store, "alma@nb.example.com", "segment=psychiatrist")
        assert count(store, ContactRow) == 2

    def test_a_possible_opt_out_awaiting_review_keeps_the_address_suppressed(
        self, store: Store
    ) -> None:
        """A low-confidence unsubscribe waits for `inbox decide`; removing the contact must not
        let an old export bring the address back."""
        do_import(store, CSV)
        contact_id = with_history(store, "tom@lm.example.org")
        with store.session() as session:
            event = session.scalars(
                select(InboundEventRow).where(InboundEventRow.contact_id == contact_id)
            ).one()
            event.kind, event.review = "unsubscribe", "pending"
        assert remove_contact(store, "tom@lm.example.org", now=T1).suppressed
        assert do_import(store, CSV).skipped_suppressed == 1

    def test_forget_after_a_plain_remove_erases_what_it_left(self, store: Store) -> None:
        do_import(store, CSV)
        with_history(store, "tom@lm.example.org")
        with store.session() as session:
            event = session.scalars(select(InboundEventRow)).one()
            event.detail = {"how": "address tom@lm.example.org"}
        contacts.set_stage(store, PIPELINE, "tom@lm.example.org", "unsubscribed", now=T1)
        remove_contact(store, "tom@lm.example.org", now=T1)
        erased = remove_contact(store, "tom@lm.example.org", now=T1, forget=True)
        assert (erased.forgotten, erased.inbound_events) == (True, 1)
        assert count(store, InboundEventRow) == 0
        assert suppression_keys(store) == [erased_key("tom@lm.example.org")]
        again = remove_contact(store, "tom@lm.example.org", now=T1, forget=True)
        assert again.inbound_events == 0  # asking twice is harmless
        assert suppression_keys(store) == [erased_key("tom@lm.example.org")]

    def test_forget_erases_the_address_wherever_else_it_was_written(self, store: Store) -> None:
        do_import(store, CSV)
        alma = with_history(store, "alma@nb.example.com")
        with_history(store, "grace@stm.example.org")
        with store.session() as session:
            # A colleague's auto-reply named Grace's address; a domain and all sending paused
            # with reasons quoting it.
            event = session.scalars(
                select(InboundEventRow).where(InboundEventRow.contact_id == alma)
            ).one()
            event.effect = "left the organization (new address Grace@stm.example.org)"
            event.detail = {"new_address": "grace@stm.example.org", "kind": "auto_reply"}
            session.add(
                DomainPauseRow(
                    domain="stm.example.org",
                    reason="refused our mail to grace@stm.example.org: 5.7.1",
                    paused_at=T1,
                    last_policy_at=T1,
                )
            )
            session.add(
                StateRow(key="sending_paused", value="550 <grace@stm.example.org>", updated_at=T1)
            )
        remove_contact(store, "grace@stm.example.org", now=T1, forget=True)
        with store.session() as session:
            event = session.scalars(select(InboundEventRow)).one()  # Alma's stays, scrubbed
            assert event.effect == "left the organization (new address [erased])"
            assert event.detail == {"new_address": "[erased]", "kind": "auto_reply"}
            pause = session.scalars(select(DomainPauseRow)).one()
            assert pause.reason == "refused our mail to [erased]: 5.7.1"
            assert session.get(StateRow, "sending_paused").value == "550 <[erased]>"  # type: ignore[union-attr]
