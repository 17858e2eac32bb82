"""The report: funnel, steps, attribution, attention, HTML rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from outreach.config import load_config
from outreach.domain.pipeline import ExtraStage, Pipeline
from outreach.report.build import build_report
from outreach.report.html import PALETTE, render_html, stage_style
from outreach.services import contacts
from outreach.store.database import Store
from outreach.store.models import ContactRow, OutboxRow, StateRow
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


def sent(
    store: Store,
    email: str,
    step: int,
    at: datetime,
    state: str = "sent",
    template: str | None = None,
) -> None:
    contact = contacts.show_contact(store, email).contact
    with store.session() as session:
        row = contacts.find_contact(session, contact.email)
        session.execute(
            insert(OutboxRow).values(
                contact_id=row.id,
                step_index=step - 1,
                template=template or f"t{step}",
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
            "Follow-up 1: Subject 2",
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


class TestForPeople:
    """The report reads as the therapist speaks: named steps, plurals, local times."""

    def test_steps_are_named_and_a_rules_replies_and_check_ins_have_rows(
        self, practice: Store, config_file: Path
    ) -> None:
        sent(practice, "alma@nb.example.com", 1001, T0 + timedelta(days=5), template="thank_you")
        sent(practice, "alma@nb.example.com", 2001, T0 + timedelta(days=35), template="nurture")
        report = build_report(practice, load_config(config_file), now=NOW)
        names = [(s.name, s.sent) for s in report.steps if s.segment == "psychiatrist"]
        assert names == [
            ("Intro", 2),
            ("Follow-up 1", 1),
            ("Follow-up 2", 0),
            ("Thank-you", 1),
            ("Check-ins", 1),
        ]

    def test_the_text_report_counts_in_words_and_says_what_each_rate_is_of(
        self, practice: Store, config_file: Path
    ) -> None:
        text = printed(build_report(practice, load_config(config_file), now=NOW))
        assert "each rate is of the previous stage" in text
        assert "1 bounce; 0 opt-outs; 0 paused." in text
        assert "Follow-up 1" in text and "Intro" in text
        # Generated at 11:00 New York time (15:00 UTC), said with the zone.
        assert "Generated Sat 11 Apr 2026, 11:00 (America/New_York)." in text
        assert "replied 39 days ago and nothing since" in text

    def test_empty_segments_fold_into_one_line(self, practice: Store, config_file: Path) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        assert [s.segment for s in report.active_segments] == [
            "psychiatrist",
            "teacher",
            "clergy",
        ]
        folded = (
            "No contacts yet: Primary-care physicians, Pediatricians, OB-GYNs and midwives, "
            "Family-law attorneys, HR and EAP staff, Fellow therapists."
        )
        assert report.empty_segments == folded
        text = printed(report)
        assert folded in text
        assert "Pediatricians" not in text.replace(folded, "")  # no table row of zeros
        page = render_html(report, "Calm Harbor")
        assert escape(folded) in page
        assert page.count('aria-label="Funnel for') == 3

    def test_the_over_time_chart_needs_two_dates_and_tells_stages_apart(
        self, practice: Store, config_file: Path
    ) -> None:
        settings = load_config(config_file)
        report = build_report(practice, settings, now=NOW)
        days = [day for day, _counts in report.pipeline_over_time]
        assert len(days) == len(set(days)) >= 2
        assert "Pipeline over time" in render_html(report, "P")
        report.pipeline_over_time = [(date(2026, 3, 2), {"new": 3})]
        assert "Pipeline over time" not in render_html(report, "P")
        styles = [stage_style(i) for i in range(len(settings.the_pipeline.stages) + 6)]
        assert len(set(styles)) == len(styles)
        assert len(set(PALETTE)) == len(PALETTE)

    def test_held_and_needs_data_contacts_need_attention(
        self, practice: Store, config_file: Path
    ) -> None:
        with practice.session() as session:
            session.execute(
                update(ContactRow)
                .where(ContactRow.email.in_(["grace@stm.example.org"]))
                .values(held_since=T0)
            )
            session.execute(
                update(ContactRow)
                .where(ContactRow.email == "jonah@nb.example.com")
                .values(needs_data="first_name")
            )
        report = build_report(practice, load_config(config_file), now=NOW)
        held = next(a for a in report.attention if a.kind == "waiting for approval")
        assert (held.subject, held.command) == ("Clergy", "outreach approve --segment clergy")
        assert held.detail.startswith("1 contact waits for your approval")
        lacking = next(a for a in report.attention if a.kind == "needs data")
        assert lacking.subject == "jonah@nb.example.com"
        assert "lacks first_name" in lacking.detail
        assert (
            lacking.command == "outreach contacts edit jonah@nb.example.com --set first_name=VALUE"
        )
        text = printed(report)
        assert "waiting for approval: Clergy: 1 contact waits for your approval" in text
        assert "-> outreach approve --segment clergy" in text
        data = json.loads(json.dumps(report.to_json()))
        (item,) = [a for a in data["attention"] if a["kind"] == "needs data"]
        assert (item["subject"], item["command"]) == ("jonah@nb.example.com", lacking.command)
        page = render_html(report, "P")
        assert "outreach approve --segment clergy" in page and "lacks first_name" in page

    def test_no_message_id_in_the_attention_items_but_the_unprocessable_ones(
        self, practice: Store, config_file: Path
    ) -> None:
        report = build_report(practice, load_config(config_file), now=NOW)
        unknown = next(a for a in report.attention if a.kind == "unknown send")
        assert unknown.detail.startswith("the intro on Mon 2 Mar 2026, 14:00 may not have arrived")
        assert unknown.command.startswith("outreach outbox resolve ")
        for item in report.attention:
            assert not re.search(r"<[^>]+@[^>]+>", item.detail + item.subject + item.command)


def printed(report: object) -> str:
    """What ``outreach report`` prints for ``report``."""
    from outreach.cli.common import out
    from outreach.cli.report import _print_report_text

    with out.capture() as captured:
        _print_report_text(report)  # type: ignore[arg-type]
    return captured.get()


class TestHtml:
    def test_values_are_escaped(self, practice: Store, config_file: Path) -> None:
        page = render_html(build_report(practice, load_config(config_file), now=NOW), "P & Co")
        assert "<b>Tom</b>" not in page
        assert "P &amp; Co" in page
        assert "<script" not in page and "http://" not in page and "https://" not in page

    def test_renders_in_headless_chromium(
        self, practice: Store, config_file: Path, tmp_path: Path
    ) -> None:
        browser = chromium()
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

    def test_fits_a_412_px_phone_without_scrolling_sideways(
        self, practice: Store, config_file: Path, tmp_path: Path
    ) -> None:
        """Long addresses, names and commands wrap; the tables stack on a phone."""
        settings = load_config(config_file)
        long_email = "dr.alexandria.montgomery-fitzgerald.psychiatry@" + "northbay" * 6 + ".org"
        contacts.import_contacts(
            practice,
            PIPELINE,
            list(settings.segments),
            (
                "email,first_name,last_name,organization,segment\n"
                f"{long_email},Alexandria-Josephine,Montgomery-Fitzgerald,"
                f"{'Northern Bay Area Integrated Behavioral Health ' * 3},psychiatrist\n"
            ).encode(),
            source="long.csv",
            now=T0,
        )
        sent(practice, long_email, 1, T0 + timedelta(hours=5))
        contacts.set_stage(practice, PIPELINE, long_email, "replied", now=T0 + timedelta(days=1))
        contacts.add_referral(
            practice, PIPELINE, long_email, received_on=date(2026, 3, 9), now=T0 + timedelta(days=7)
        )
        with practice.session() as session:
            session.execute(
                update(ContactRow)
                .where(ContactRow.email == long_email)
                .values(needs_data="first_name, organization, a_very_long_custom_field_name")
            )
        report = build_report(practice, settings, now=NOW)
        assert any(a.email == long_email for a in report.attribution)
        page = render_html(report, "Calm Harbor Counseling and Family Therapy of Greater Portland")
        width, fits = page_width(tmp_path, page, chromium())
        assert width <= fits == 412, f"the report scrolls sideways at 412 px: {width} px wide"

    def test_the_width_check_sees_a_page_that_scrolls(self, tmp_path: Path) -> None:
        """The check above can fail: a 600-px block is measured as such."""
        page = '<!DOCTYPE html><html><body><div style="width:600px">wide</div></body></html>'
        width, fits = page_width(tmp_path, page, chromium())
        assert width > fits == 412


def chromium() -> str:
    """The headless browser; missing, the test skips locally and fails in CI (CI=true)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if IN_CI:
            pytest.fail("chromium is missing (CI=true); run scripts/install-system-deps")
        pytest.skip("chromium is not installed; run: sudo ./scripts/install-system-deps")
    return browser


def page_width(tmp_path: Path, page: str, browser: str) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of ``page`` in a 412-px-wide frame, as Chromium lays it out.

    A headless window is never narrower than 500 px, so the page goes in a 412-px iframe
    (``srcdoc``: same origin, so its document can be measured; tall, so no scrollbar takes
    width); the report itself holds no script, the wrapper does.
    """
    wrapper = tmp_path / "phone.html"
    wrapper.write_text(
        '<!DOCTYPE html><html><body style="margin:0">'
        f'<iframe width="412" height="20000" style="border:0" srcdoc="{escape(page)}"></iframe>'
        "<script>window.addEventListener('load', () => {"
        "const d = document.querySelector('iframe').contentDocument.documentElement;"
        "document.body.setAttribute('data-width', d.scrollWidth + ' ' + d.clientWidth);"
        "});</script></body></html>",
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            "--dump-dom",
            wrapper.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'data-width="(\d+) (\d+)"', result.stdout)
    assert found, result.stderr[-2000:]
    return int(found.group(1)), int(found.group(2))


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
