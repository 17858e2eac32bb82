"""The report: funnel, steps, attribution, attention, HTML rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from outreach.config import load_config
from outreach.domain.pipeline import ExtraStage, Pipeline
from outreach.report.build import build_report
from outreach.report.html import render_html
from outreach.services import contacts
from outreach.store.database import Store
from outreach.store.models import OutboxRow, StateRow
from tests.conftest import IN_CI, Run

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PIPELINE = Pipeline.with_extra([ExtraStage("meeting", "engaged")])  # as the example config
CSV = (
    "email,first_name,last_name,organization,segment\n"
    "alma@nb.example.com,Alma,Reyes,North Bay,psychiatrist\n"
    "jonah@nb.example.com,Jonah,Whitfield,North Bay,psychiatrist\n"
    "tom@lm.example.org,<b>Tom</b>,Beaulieu,Lincoln Middle,teacher\n"
    "grace@stm.example.org,Grace,Okafor,St. Mark's,clergy\n"
)


def sent(store: Store, email: str, step: int, at: datetime, state: str = "sent") -> None:
    contact = contacts.show_contact(store, email).contact
    with store.session() as session:
        row = contacts.find_contact(session, contact.email)
        session.execute(
            insert(OutboxRow).values(
                contact_id=row.id,
                step_index=step - 1,
                template=f"t{step}",
                message_id=f"<{email}-{step}@calmharbor.example.com>",
                subject=f"Subject {step}",
                state=state,
                attempts=1,
                last_error="",
                created_at=at,
                updated_at=at,
                sent_at=at if state == "sent" else None,
            )
        )
        if step == 1 and row.stage == "new" and state == "sent":
            contacts.move_contact(row, PIPELINE, "contacted", at, f"step 1 sent <{email}-1>")


@pytest.fixture
def practice(config_file: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Four sources: Alma replied to step 2 and referred twice; Jonah replied to step 1 and
    went quiet; Tom bounced; Grace was never contacted."""
    settings = load_config(config_file)
    contacts.import_contacts(
        store, PIPELINE, list(settings.segments), CSV.encode(), source="t.csv", now=T0
    )
    sent(store, "alma@nb.example.com", 1, T0 + timedelta(hours=1))
    sent(store, "alma@nb.example.com", 2, T0 + timedelta(days=4))
    contacts.set_stage(
        store, PIPELINE, "alma@nb.example.com", "replied", now=T0 + timedelta(days=4, hours=5)
    )
    contacts.set_stage(
        store, PIPELINE, "alma@nb.example.com", "engaged", now=T0 + timedelta(days=6)
    )
    contacts.add_referral(
        store,
        PIPELINE,
        "alma@nb.example.com",
        received_on=date(2026, 3, 20),
        now=T0 + timedelta(days=18),
    )
    contacts.add_referral(
        store,
        PIPELINE,
        "alma@nb.example.com",
        received_on=date(2026, 4, 2),
        now=T0 + timedelta(days=31),
    )
    sent(store, "jonah@nb.example.com", 1, T0 + timedelta(hours=2))
    contacts.set_stage(
        store, PIPELINE, "jonah@nb.example.com", "replied", now=T0 + timedelta(hours=8)
    )
    sent(store, "tom@lm.example.org", 1, T0 + timedelta(hours=3))
    contacts.set_stage(
        store, PIPELINE, "tom@lm.example.org", "bounced", now=T0 + timedelta(hours=3, minutes=1)
    )
    sent(store, "grace@stm.example.org", 1, T0 + timedelta(hours=4), state="unknown")
    return store


NOW = T0 + timedelta(days=40)


class TestNumbers:
    def test_funnel_by_segment(self, practice: Store, config_file: Path) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        psych = next(s for s in report.segments if s.segment == "psychiatrist")
        assert (
            psych.contacts,
            psych.contacted,
            psych.replied,
            psych.engaged,
            psych.referring,
            psych.referrals,
        ) == (2, 2, 2, 1, 1, 2)
        assert psych.rates == {"contacted": 1.0, "replied": 1.0, "engaged": 0.5, "referring": 1.0}
        clergy = next(s for s in report.segments if s.segment == "clergy")
        assert (clergy.contacts, clergy.contacted) == (1, 0)

    def test_replies_are_attributed_to_the_step_that_drew_them(
        self, practice: Store, config_file: Path
    ) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        steps = {(s.segment, s.step): (s.sent, s.replies) for s in report.steps}
        assert steps[("psychiatrist", 1)] == (2, 1)  # Jonah answered the intro
        assert steps[("psychiatrist", 2)] == (1, 1)  # Alma answered the first follow-up
        assert steps[("teacher", 1)] == (1, 0)

    def test_median_time_to_first_reply_and_exits(self, practice: Store, config_file: Path) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        # Jonah: 6 h after his intro; Alma: 4 days 4 h after hers -> median of (6, 100) h.
        assert report.median_hours_to_first_reply == pytest.approx(53.0)
        assert (report.bounces, report.opt_outs) == (1, 0)

    def test_attribution(self, practice: Store, config_file: Path) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        (alma,) = report.attribution
        assert (alma.email, alma.referrals, alma.first_reply_to) == (
            "alma@nb.example.com",
            2,
            "step 2 (t2): Subject 2",
        )
        assert report.referrals_by_segment == {"psychiatrist": 2}

    def test_needs_attention(self, practice: Store, config_file: Path) -> None:
        with practice.session() as session:
            session.add(StateRow(key="sending_paused", value="554 5.7.1 spam", updated_at=NOW))
        report = build_report(practice, load_config(config_file), now=NOW)
        kinds = {(a.kind, a.subject) for a in report.attention}
        assert ("sending paused", "all sending") in kinds
        assert ("unknown send", "grace@stm.example.org") in kinds
        assert ("replied, not engaged", "jonah@nb.example.com") in kinds
        assert not any(a.subject == "alma@nb.example.com" for a in report.attention)

    def test_since_selects_a_cohort(self, practice: Store, config_file: Path) -> None:
        report = build_report(
            practice, load_config(config_file), now=NOW, since=(T0 + timedelta(days=1)).date()
        )
        assert report.is_empty

    def test_segment_filter(self, practice: Store, config_file: Path) -> None:
        report = build_report(practice, load_config(config_file), now=NOW, segment="teacher")
        assert [s.segment for s in report.segments] == ["teacher"]
        assert [s.segment for s in report.steps] == ["teacher", "teacher", "teacher"]


class TestHtml:
    def test_values_are_escaped(self, practice: Store, config_file: Path) -> None:
        page = render_html(build_report(practice, load_config(config_file), now=NOW), "P & Co")
        assert "<b>Tom</b>" not in page
        assert "P &amp; Co" in page
        assert "<script" not in page and "http://" not in page and "https://" not in page

    def test_renders_in_headless_chromium(
        self, practice: Store, config_file: Path, tmp_path: Path
    ) -> None:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            if IN_CI:
                pytest.fail("chromium is missing (CI=true); run scripts/install-system-deps")
            pytest.skip("chromium is not installed; run: sudo ./scripts/install-system-deps")
        from PIL import Image

        page = tmp_path / "report.html"
        page.write_text(
            render_html(build_report(practice, load_config(config_file), now=NOW), "Calm Harbor")
        )
        shot = tmp_path / "report.png"
        result = subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
                "--hide-scrollbars",
                "--window-size=412,1600",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shot.exists(), result.stderr[-2000:]
        console = [
            line
            for line in result.stderr.splitlines()
            if "CONSOLE" in line or "Failed to load" in line
        ]
        assert console == []
        image = Image.open(shot).convert("RGB")
        colors = image.getcolors(maxcolors=1 << 20) or []
        assert len(colors) > 20, "the page rendered blank"
        assert image.size == (412, 1600)


class TestCommand:
    def test_empty_database(self, cli: Callable[..., Run]) -> None:
        run = cli("report")
        assert run.exit_code == 0
        assert "No contacts yet" in run.stdout

    def test_since_in_the_future(self, cli: Callable[..., Run]) -> None:
        run = cli("report", "--since", "2999-01-01")
        assert run.exit_code == 2
        assert "in the future" in run.stderr

    def test_unknown_segment(self, cli: Callable[..., Run]) -> None:
        assert "unknown segment 'pastor'" in cli("report", "--segment", "pastor").stderr

    def test_unwritable_html_path(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        run = cli("report", "--html", str(tmp_path / "no-such-dir" / "r.html"))
        assert run.exit_code == 2
        assert "Can't write" in run.stderr

    def test_json_and_html_after_an_import(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        (tmp_path / "c.csv").write_text(CSV)
        assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
        data = json.loads(cli("report", "--json", "--segment", "psychiatrist").stdout)
        assert data["segments"][0]["contacts"] == 2
        assert set(data) >= {
            "segments",
            "steps",
            "attribution",
            "attention",
            "median_hours_to_first_reply",
            "pipeline_over_time",
        }
        run = cli("report", "--html", str(tmp_path / "r.html"))
        assert run.exit_code == 0
        assert "Funnel by segment" in run.stdout
        assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")

    def test_contact_timeline(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        (tmp_path / "c.csv").write_text(CSV)
        cli("contacts", "import", str(tmp_path / "c.csv"))
        cli("referrals", "add", "grace@stm.example.org", "--note", "by phone")
        shown = cli("contacts", "show", "grace@stm.example.org").stdout
        assert "timeline (UTC):" in shown
        assert "(none) -> new  imported from c.csv line 5" in shown
        assert "referral received" in shown and "by phone" in shown
