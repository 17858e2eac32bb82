"""Business days, sending windows, sequence steps and pacing: the pure scheduling core."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.domain.business_days import SendingWindow, make_calendar
from outreach.domain.pacing import DueSend, Policy, SendLog, schedule
from outreach.domain.sequencing import StepRecord, finished_at, next_step

NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
US = make_calendar(WEEKDAYS, "US", "")
PLAIN = make_calendar(WEEKDAYS)
WINDOW = SendingWindow(time(9, 0), time(17, 0))
MONDAY_9 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York


class TestBusinessDays:
    def test_weekends_are_skipped(self) -> None:
        friday = date(2026, 3, 6)
        assert PLAIN.add_business_days(friday, 1) == date(2026, 3, 9)

    def test_public_holidays_are_skipped(self) -> None:
        # Thanksgiving 2026 is Thursday 26 November.
        assert US.add_business_days(date(2026, 11, 25), 1) == date(2026, 11, 27)

    def test_blackouts_are_skipped(self) -> None:
        calendar = PLAIN.with_blackouts([(date(2026, 3, 9), date(2026, 3, 13))])
        assert calendar.add_business_days(date(2026, 3, 6), 1) == date(2026, 3, 16)

    def test_zero_days_is_the_same_day(self) -> None:
        assert PLAIN.add_business_days(date(2026, 3, 7), 0) == date(2026, 3, 7)


class TestWindow:
    def test_before_opening_waits_for_it(self) -> None:
        early = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 06:00 New York
        assert WINDOW.next_opening(early, NY, PLAIN) == MONDAY_9

    def test_after_closing_goes_to_the_next_business_day(self) -> None:
        friday_evening = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
        assert WINDOW.next_opening(friday_evening, NY, PLAIN) == datetime(
            2026, 3, 9, 13, 0, tzinfo=UTC
        )  # Monday 09:00 EDT: the clocks changed on 8 March

    def test_inside_the_window_is_now(self) -> None:
        at = MONDAY_9 + timedelta(hours=2)
        assert WINDOW.next_opening(at, NY, PLAIN) == at

    def test_the_contacts_zone_decides(self) -> None:
        assert WINDOW.next_opening(MONDAY_9, CHICAGO, PLAIN) == MONDAY_9 + timedelta(hours=1)


class TestNextStep:
    DELAYS = (0, 3, 5)

    def step(self, records: list[StepRecord], stage: str = "contacted", **kw: object) -> object:
        return next_step(
            stage=stage,
            suppressed=bool(kw.get("suppressed", False)),
            enrolled_at=MONDAY_9,
            delays=self.DELAYS,
            records=records,
            calendar=PLAIN,
            zone=NY,
            paused_until=kw.get("paused_until"),
        )  # type: ignore[arg-type]

    def test_first_step_counts_from_enrollment(self) -> None:
        due = self.step([], stage="new")
        assert due is not None and (due.step_index, due.due_at) == (0, MONDAY_9)  # type: ignore[attr-defined]

    def test_follow_up_counts_business_days_from_the_last_send(self) -> None:
        friday = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
        due = self.step([StepRecord(0, "sent", friday)])
        assert due.due_at == datetime(2026, 3, 11, 14, 0, tzinfo=UTC)  # type: ignore[attr-defined]

    def test_waits_while_the_previous_step_is_retrying(self) -> None:
        assert self.step([StepRecord(0, "retry", None)]) is None

    def test_stops_after_a_reply_or_a_move_by_hand(self) -> None:
        for stage in (
            "replied",
            "engaged",
            "referring",
            "no_response",
            "unsubscribed",
            "bounced",
            "do_not_contact",
        ):
            assert self.step([], stage=stage) is None

    def test_stops_when_suppressed(self) -> None:
        assert self.step([], stage="new", suppressed=True) is None

    def test_pause_delays_the_step(self) -> None:
        later = MONDAY_9 + timedelta(days=9)
        due = self.step([], stage="new", paused_until=later)
        assert due.due_at == later  # type: ignore[attr-defined]

    def test_no_step_after_the_last(self) -> None:
        sent = [StepRecord(i, "sent", MONDAY_9) for i in range(3)]
        assert self.step(sent) is None

    def test_no_response_after_the_last_step(self) -> None:
        sent = [StepRecord(i, "sent", MONDAY_9 + timedelta(days=i)) for i in range(3)]
        at = finished_at(
            stage="contacted",
            steps=3,
            records=sent,
            after_business_days=10,
            calendar=PLAIN,
            zone=NY,
        )
        assert at == datetime(2026, 3, 18, 13, 0, tzinfo=UTC)  # 09:00 local, now EDT


def policy(**kw: object) -> Policy:
    return Policy(window=WINDOW, practice_zone=NY, **kw)  # type: ignore[arg-type]


def due(
    key: object, at: datetime = MONDAY_9, org: str | None = None, zone: ZoneInfo = NY
) -> DueSend:
    return DueSend(key, at, zone, PLAIN, org)  # type: ignore[arg-type]


class TestPacing:
    def test_gap_between_sends(self) -> None:
        plan = schedule(
            [due(1), due(2), due(3)],
            policy(min_gap=timedelta(minutes=2)),
            SendLog(),
            start=MONDAY_9,
            until=MONDAY_9 + timedelta(hours=1),
        )
        times = [at for _, at in plan]
        assert times == [MONDAY_9 + timedelta(minutes=2 * i) for i in range(3)]

    def test_only_what_fits_by_until(self) -> None:
        plan = schedule(
            [due(1), due(2)],
            policy(min_gap=timedelta(minutes=2)),
            SendLog(),
            start=MONDAY_9,
            until=MONDAY_9,
        )
        assert [d.key for d, _ in plan] == [1]

    def test_hourly_cap(self) -> None:
        plan = schedule(
            [due(i) for i in range(5)],
            policy(max_per_hour=2),
            SendLog(),
            start=MONDAY_9,
            until=MONDAY_9 + timedelta(hours=3),
        )
        times = [at for _, at in plan]
        assert sum(t < MONDAY_9 + timedelta(hours=1) for t in times) == 2
        assert len(times) == 5

    def test_daily_cap_moves_to_the_next_business_day(self) -> None:
        plan = schedule(
            [due(i) for i in range(3)],
            policy(max_per_day=2),
            SendLog(),
            start=MONDAY_9,
            until=MONDAY_9 + timedelta(days=3),
        )
        assert plan[2][1] == MONDAY_9 + timedelta(days=1)

    def test_one_message_per_organization_per_day(self) -> None:
        dues = [due(1, org="North Bay"), due(2, org="north bay "), due(3, org="Elsewhere")]
        plan = dict(
            schedule(
                dues,
                policy(per_organization_per_day=1),
                SendLog(),
                start=MONDAY_9,
                until=MONDAY_9 + timedelta(days=3),
            ).__iter__()
        )
        at = {d.key: t for d, t in plan.items()}
        assert at[1] == MONDAY_9 and at[3] == MONDAY_9
        assert at[2] == MONDAY_9 + timedelta(days=1)

    def test_earlier_sends_count(self) -> None:
        log = SendLog.of([(MONDAY_9, "North Bay")], NY)
        plan = schedule(
            [due(1, org="North Bay")],
            policy(per_organization_per_day=1),
            log,
            start=MONDAY_9,
            until=MONDAY_9 + timedelta(days=2),
        )
        assert plan[0][1] == MONDAY_9 + timedelta(days=1)

    def test_jitter_is_stable(self) -> None:
        p = policy(min_gap=timedelta(seconds=60), jitter=timedelta(seconds=60))
        runs = [
            schedule(
                [due(1), due(2)], p, SendLog(), start=MONDAY_9, until=MONDAY_9 + timedelta(hours=1)
            )
            for _ in range(2)
        ]
        assert runs[0] == runs[1]
        gap = runs[0][1][1] - runs[0][0][1]
        assert timedelta(seconds=60) <= gap < timedelta(seconds=120)

    @given(
        st.lists(
            st.tuples(st.integers(0, 7 * 24 * 60), st.sampled_from(["a", "b", None])), max_size=25
        ),
        st.integers(0, 5),
        st.integers(0, 300),
    )
    @settings(max_examples=60, deadline=None)
    def test_every_rule_holds_in_any_plan(
        self, specs: list[tuple[int, str | None]], per_hour: int, gap_s: int
    ) -> None:
        p = policy(
            max_per_hour=per_hour, min_gap=timedelta(seconds=gap_s), per_organization_per_day=1
        )
        dues = [due(i, MONDAY_9 + timedelta(minutes=m), org) for i, (m, org) in enumerate(specs)]
        plan = schedule(dues, p, SendLog(), start=MONDAY_9, until=MONDAY_9 + timedelta(days=30))
        times = sorted(at for _, at in plan)
        for d, at in plan:
            assert at >= d.due_at
            assert WINDOW.contains(at, NY, PLAIN)
        for a, b in itertools.pairwise(times):
            assert b - a >= timedelta(seconds=gap_s)
        if per_hour:
            for t in times:
                assert sum(t <= u < t + timedelta(hours=1) for u in times) <= per_hour
        days = [(d.organization, at.astimezone(NY).date()) for d, at in plan if d.organization]
        assert len(days) == len(set(days))
