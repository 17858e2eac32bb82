"""The relationship pipeline: its stages, their order, and the pure rules for changing stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from outreach.domain.states import Stage
from outreach.errors import InvalidStage

NEW = Stage.NEW
CONTACTED = Stage.CONTACTED
NO_RESPONSE = Stage.NO_RESPONSE
REPLIED = Stage.REPLIED
ENGAGED = Stage.ENGAGED
REFERRING = Stage.REFERRING
UNSUBSCRIBED = Stage.UNSUBSCRIBED
BOUNCED = Stage.BOUNCED
DO_NOT_CONTACT = Stage.DO_NOT_CONTACT

#: The stages every pipeline has, in report order: the funnel first, then the exits.
BUILTIN_STAGES: tuple[str, ...] = (
    NEW,
    CONTACTED,
    NO_RESPONSE,
    REPLIED,
    ENGAGED,
    REFERRING,
    UNSUBSCRIBED,
    BOUNCED,
    DO_NOT_CONTACT,
)

#: Stages that end outreach to a contact: nothing is ever sent to them again.
EXIT_STAGES: frozenset[str] = frozenset({UNSUBSCRIBED, BOUNCED, DO_NOT_CONTACT})


@dataclass(frozen=True)
class ExtraStage:
    """A stage a practice adds (e.g. ``meeting``), placed after an existing one in reports."""

    name: str
    after: str


@dataclass(frozen=True)
class Pipeline:
    """The ordered stages of one practice's pipeline."""

    stages: tuple[str, ...]

    @classmethod
    def with_extra(cls, extra: Iterable[ExtraStage]) -> Pipeline:
        """Built-in stages plus ``extra``, each inserted after the stage it names."""
        stages = list(BUILTIN_STAGES)
        for stage in extra:
            if stage.name in stages:
                raise ValueError(f"stage {stage.name!r} already exists")
            if stage.after not in stages:
                raise InvalidStage(stage.after, stages)
            stages.insert(stages.index(stage.after) + 1, stage.name)
        return cls(tuple(stages))

    def require(self, stage: str) -> str:
        """Return ``stage`` if the pipeline has it, else raise InvalidStage."""
        if stage not in self.stages:
            raise InvalidStage(stage, self.stages)
        return stage


@dataclass(frozen=True)
class StageChange:
    """One move of a contact between stages, and why it happened."""

    at: datetime
    from_stage: str | None
    to_stage: str
    reason: str


def change_stage(
    pipeline: Pipeline, current: str | None, target: str, *, at: datetime, reason: str
) -> StageChange | None:
    """The change that moves a contact from ``current`` to ``target``, or None if already there.

    Manual changes may go anywhere in the pipeline: the therapist knows the relationship
    best. Automatic moves (replies, bounces) decide their target before calling this.
    """
    pipeline.require(target)
    if not reason.strip():
        raise ValueError("a stage change needs a reason")
    if current == target:
        return None
    return StageChange(at=at, from_stage=current, to_stage=target, reason=reason)
