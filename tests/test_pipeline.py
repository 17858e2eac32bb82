"""The pipeline's stages and the pure stage-change rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outreach.domain.pipeline import BUILTIN_STAGES, ExtraStage, Pipeline, change_stage
from outreach.errors import InvalidStage

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class TestPipeline:
    def test_builtin_stages_follow_the_design(self) -> None:
        """The funnel comes first, then the exits, as DESIGN.md lists them."""
        assert Pipeline.with_extra([]).stages == (
            "new",
            "contacted",
            "no_response",
            "replied",
            "engaged",
            "referring",
            "unsubscribed",
            "bounced",
            "do_not_contact",
        )

    def test_extra_stage_sits_after_the_one_it_names(self) -> None:
        pipeline = Pipeline.with_extra([ExtraStage("meeting", "engaged")])
        assert pipeline.stages.index("meeting") == pipeline.stages.index("engaged") + 1

    def test_extra_stages_can_chain(self) -> None:
        pipeline = Pipeline.with_extra(
            [ExtraStage("meeting", "engaged"), ExtraStage("lunch", "meeting")]
        )
        assert pipeline.stages[5:8] == ("meeting", "lunch", "referring")

    def test_extra_stage_after_unknown_stage_is_refused(self) -> None:
        with pytest.raises(InvalidStage, match="'nowhere'"):
            Pipeline.with_extra([ExtraStage("meeting", "nowhere")])

    def test_require_names_the_known_stages(self) -> None:
        with pytest.raises(InvalidStage, match="known stages: new, contacted"):
            Pipeline.with_extra([]).require("enagaged")


class TestChangeStage:
    def test_a_change_records_from_to_and_why(self) -> None:
        change = change_stage(Pipeline(BUILTIN_STAGES), "new", "engaged", at=AT, reason="call")
        assert change is not None
        assert (change.from_stage, change.to_stage, change.reason, change.at) == (
            "new",
            "engaged",
            "call",
            AT,
        )

    def test_no_change_when_already_there(self) -> None:
        assert change_stage(Pipeline(BUILTIN_STAGES), "new", "new", at=AT, reason="x") is None

    def test_a_reason_is_required(self) -> None:
        with pytest.raises(ValueError, match="reason"):
            change_stage(Pipeline(BUILTIN_STAGES), "new", "engaged", at=AT, reason=" ")

    @given(st.sampled_from(BUILTIN_STAGES), st.sampled_from(BUILTIN_STAGES))
    def test_manual_moves_reach_every_stage(self, current: str, target: str) -> None:
        """A therapist may move a relationship anywhere; only a no-op yields no change."""
        change = change_stage(Pipeline(BUILTIN_STAGES), current, target, at=AT, reason="r")
        assert (change is None) == (current == target)
        if change is not None:
            assert change.to_stage == target
