"""Workflow rules: which configured rules an inbound event triggers, and the actions that follow.

Pure: an event and the rules in, the actions out. Rules run in order; every matching rule
adds its actions (a later ``set_stage`` wins) until one says ``stop``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class RuleConditions(Protocol):
    """A rule's ``when``: all must hold; an empty one places no condition."""

    @property
    def segment(self) -> Sequence[str]: ...
    @property
    def stage(self) -> Sequence[str]: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def sender_domain(self) -> Sequence[str]: ...
    @property
    def keywords(self) -> Sequence[str]: ...
    @property
    def regex(self) -> str: ...


class RuleActions(Protocol):
    """A rule's ``then``."""

    @property
    def set_stage(self) -> str: ...
    @property
    def add_tag(self) -> str: ...
    @property
    def remove_tag(self) -> str: ...
    @property
    def pause_days(self) -> int: ...
    @property
    def notify(self) -> bool: ...
    @property
    def reply_with(self) -> str: ...
    @property
    def move_to(self) -> str: ...
    @property
    def stop(self) -> bool: ...


class Rule(Protocol):
    """A workflow rule as the rule engine reads it (the configuration's ``[[rules]]`` tables
    have this shape)."""

    @property
    def on(self) -> str: ...
    @property
    def when(self) -> RuleConditions: ...
    @property
    def then(self) -> RuleActions: ...


@dataclass(frozen=True)
class RuleEvent:
    """What a rule may look at. ``text`` is the reply's new text, held in memory only."""

    on: str
    segment: str
    stage: str
    tags: tuple[str, ...]
    sender_domain: str
    text: str = field(default="", repr=False)


@dataclass
class Actions:
    """What the matching rules ask for."""

    rules: list[int] = field(default_factory=list)
    set_stage: str | None = None
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    pause_days: int = 0
    notify: bool = False
    move_to: str | None = None
    reply_with: list[str] = field(default_factory=list)


def matches(rule: Rule, event: RuleEvent) -> bool:
    """Whether every condition of ``rule`` holds for ``event``."""
    when = rule.when
    if rule.on != event.on:
        return False
    if when.segment and event.segment not in when.segment:
        return False
    if when.stage and event.stage not in when.stage:
        return False
    if when.tags and not set(when.tags) & set(event.tags):
        return False
    domain = event.sender_domain.lower()
    if when.sender_domain and domain not in [d.lower() for d in when.sender_domain]:
        return False
    text = event.text.casefold()
    if when.keywords and not any(k.casefold() in text for k in when.keywords):
        return False
    return not (when.regex and re.search(when.regex, event.text, re.IGNORECASE) is None)


def evaluate(rules: Sequence[Rule], event: RuleEvent) -> Actions:
    """The actions of every rule that matches, in order, until one stops."""
    actions = Actions()
    for index, rule in enumerate(rules):
        if not matches(rule, event):
            continue
        then = rule.then
        actions.rules.append(index)
        if then.set_stage:
            actions.set_stage = then.set_stage
        if then.add_tag:
            actions.add_tags.append(then.add_tag)
        if then.remove_tag:
            actions.remove_tags.append(then.remove_tag)
        actions.pause_days = max(actions.pause_days, then.pause_days)
        actions.notify = actions.notify or then.notify
        if then.move_to:
            actions.move_to = then.move_to
        if then.reply_with:
            actions.reply_with.append(then.reply_with)
        if then.stop:
            break
    return actions
