"""The starter kit serves any practice: every template of every segment, rendered for three
practices as ``outreach init`` writes them, reads as proofread English with nothing borrowed
from another practice, nothing repeated, no TODO and no promise the practice didn't make."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from outreach.config import Settings, load_config
from outreach.mail.compose import template_context
from outreach.mail.templates import TemplateSet
from outreach.runtime.init import Answers, render_config
from tests.conftest import ROOT
from tests.test_init import KIT, SEGMENTS

BASE = Answers(
    practice_name="Practice",
    therapist="Sam Rivera",
    ideal_client="",
    method="",
    result="",
    postal_address="1 Main Street, Springfield, IL 62701",
    sender="sam@practice.example.com",
    smtp_host="smtp.practice.example.com",
    imap_host="imap.practice.example.com",
    timezone="America/Chicago",
    holidays_subdivision="IL",
)
PRACTICES = {
    "anxiety": replace(
        BASE,
        practice_name="Calm Harbor Counseling",
        ideal_client="adults with anxiety disorders",
        method="cognitive behavioral therapy",
        result="fewer panic attacks and more confidence in daily life",
    ),
    "couples": replace(
        BASE,
        practice_name="Lakeside Couples Therapy",
        ideal_client="couples in conflict",
        method="emotionally focused therapy",
        result="calmer conversations and a closer, steadier relationship",
    ),
    "trauma": replace(
        BASE,
        practice_name="Bright Path Child and Teen Therapy",
        ideal_client="children and teens who have lived through trauma",
        method="trauma-focused cognitive behavioral therapy",
        result="feeling safe again, sleeping better and getting back to school and friends",
    ),
}
# Words that belong to one practice's focus: in another practice's messages they are leftovers,
# unless that practice's own profile says them.
FOCUS_WORDS = {
    "anxiety": ["anxiety", "anxious", "panic", "worry", "worried", "worries", "mindfulness"],
    "couples": ["couple", "couples", "marriage", "marital", "partner", "partners", "spouse"],
    "trauma": ["trauma", "traumatic", "abuse", "ptsd"],
    "other": ["stomach", "coping skills", "symptoms", "perinatal"],
}
# Promises a practice may not be able to keep; only its own config may make them.
OVERCLAIMS = [
    "within days",
    "within a day",
    "same day",
    "quickly",
    "promptly",
    "right away",
    "on the spot",
    "complete confidentiality",
    "evening",
    "weekend",
    "insurance",
    "plans i accept",
    "guarantee",
    "openings",
    "availability",
]
CONTACTS = {
    "titled": {
        "email": "a@x.example.com",
        "first_name": "Ari",
        "last_name": "Feldman",
        "title": "Rabbi",
        "custom": {},
    },
    "untitled": {
        "email": "b@x.example.com",
        "first_name": "Priya",
        "last_name": "Shah",
        "custom": {},
    },
    "nameless": {"email": "c@x.example.com", "custom": {}},
}
SEQUENCE_STEPS = {"intro": 1, "follow_up_1": 2, "follow_up_2": 3}


def settings_for(tmp_path: Path, answers: Answers) -> Settings:
    path = tmp_path / "config" / "outreach.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(answers), encoding="utf-8")
    return load_config(path)


def render_all(settings: Settings, segment: str, contact: dict[str, object]) -> dict[str, str]:
    """Every message of the kit for one contact of a segment: name -> subject and body, the
    footer left out (it is the same in every message)."""
    templates = TemplateSet(ROOT / "templates")
    messages = {}
    for name in KIT:
        number = SEQUENCE_STEPS.get(name, 0)
        context = template_context(settings, segment, contact, step_number=number, template=name)
        rendered = templates.render(segment, name, context, needs_subject=number in (0, 1))
        body = rendered.body.split("\n-- \n", 1)[0]
        messages[name] = f"{rendered.subject or ''}\n{body}"
    return messages


def sentences(text: str) -> list[str]:
    """The sentences of a message of four words or more (greetings and sign-offs are less)."""
    parts = re.split(r"(?<=[.?!:;])\s+|\n+", text)
    return [p.strip().lower() for p in parts if len(p.split()) >= 4]


def phrases(text: str, size: int = 6) -> list[str]:
    """Every run of ``size`` words in the body (a subject may name what the body says)."""
    body = text.split("\n", 1)[1]
    words = re.findall(r"[a-z0-9'-]+", body.lower())
    return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    return {
        name: settings_for(tmp_path_factory.mktemp(name), answers)
        for name, answers in PRACTICES.items()
    }


@pytest.mark.parametrize("practice", list(PRACTICES))
@pytest.mark.parametrize("segment", SEGMENTS)
class TestEveryTemplateForEveryPractice:
    def test_no_todo_no_repetition_no_leftover_no_overclaim(
        self, kits: dict[str, Settings], practice: str, segment: str
    ) -> None:
        settings = kits[practice]
        own = " ".join(
            [*settings.practice.model_dump().values(), *settings.segments[segment].profile.values()]
        ).lower()
        for who, contact in CONTACTS.items():
            messages = render_all(settings, segment, contact)
            seen: dict[str, str] = {}
            for name, text in messages.items():
                where = f"{practice} / {segment} / {name} / {who}"
                assert "TODO" not in text, where
                lowered = text.lower()
                for claim in OVERCLAIMS:
                    assert claim not in lowered, (where, claim)
                for focus, words in FOCUS_WORDS.items():
                    if focus == practice:
                        continue
                    for word in words:
                        if re.search(rf"\b{word}\b", own):
                            continue
                        assert not re.search(rf"\b{word}\b", lowered), (where, word)
                repeated = [p for p in set(phrases(text)) if phrases(text).count(p) > 1]
                assert not repeated, (where, "a phrase said twice", repeated)
                for sentence in sentences(text):
                    assert sentence not in seen, (where, "said before in", seen.get(sentence))
                    seen[sentence] = name
                assert "  " not in text and " ," not in text and " ." not in text, where
                assert "..." not in text and "!!" not in text, where

    def test_the_greeting_names_the_contact_as_they_are_addressed(
        self, kits: dict[str, Settings], practice: str, segment: str
    ) -> None:
        settings = kits[practice]
        expected = {
            "titled": "Dear Rabbi Feldman,",
            "untitled": "Dear Priya,",
            "nameless": "Hello,",
        }
        if segment in ("psychiatrist", "pediatrician"):  # address_as: every one is a doctor
            expected["untitled"] = "Dear Dr. Shah,"
        for who, contact in CONTACTS.items():
            for name, text in render_all(settings, segment, contact).items():
                assert text.split("\n")[1] == expected[who], (practice, segment, name, who)


class TestWhatEachSourceIsTold:
    """The segment-specific content the referral method asks for."""

    def messages(self, kits: dict[str, Settings], segment: str) -> str:
        return "\n".join(render_all(kits["couples"], segment, CONTACTS["untitled"]).values())

    def test_school_staff_hear_about_504_iep_school_refusal_and_the_release(
        self, kits: dict[str, Settings]
    ) -> None:
        text = self.messages(kits, "teacher")
        for part in ("504", "IEP", "school refusal", "release of information"):
            assert part in text, part

    def test_family_law_attorneys_hear_the_boundaries_in_the_intro(
        self, kits: dict[str, Settings]
    ) -> None:
        intro = render_all(kits["couples"], "family_law", CONTACTS["untitled"])["intro"]
        assert "I don't do custody evaluations" in intro
        assert "I testify only when a court requires it" in intro

    def test_hr_hears_about_return_to_work_coordination_with_consent(
        self, kits: dict[str, Settings]
    ) -> None:
        text = self.messages(kits, "hr_eap")
        assert "return to work" in text and "consent" in text

    @pytest.mark.parametrize("segment", SEGMENTS)
    def test_no_follow_up_is_just_checking_in(
        self, kits: dict[str, Settings], segment: str
    ) -> None:
        messages = render_all(kits["trauma"], segment, CONTACTS["untitled"])
        for name in ("follow_up_1", "follow_up_2"):
            text = messages[name].lower()
            assert "checking in" not in text and "following up on my note" not in text
            # one new useful thing: a resource, how coordination works, or a concrete offer
            assert re.search(r"release|consent|permission|one-page|list|form|who you see", text), (
                segment,
                name,
            )


class TestTheExamplePractice:
    """The shipped example config (an anxiety practice) reads as well as the proposals."""

    @pytest.mark.parametrize("segment", SEGMENTS)
    def test_example_messages_repeat_nothing(self, segment: str) -> None:
        settings = load_config(ROOT / "config" / "outreach.example.toml")
        seen: dict[str, str] = {}
        for name, text in render_all(settings, segment, CONTACTS["titled"]).items():
            assert "TODO" not in text
            repeated = [p for p in set(phrases(text)) if phrases(text).count(p) > 1]
            assert not repeated, (segment, name, repeated)
            for sentence in sentences(text):
                assert sentence not in seen, (segment, name, seen.get(sentence))
                seen[sentence] = name
