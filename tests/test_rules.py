"""Workflow rules: validation by index and key, pure evaluation, and effects on real servers."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import pytest
from imapclient import IMAPClient

from outreach.config import Rule, load_config
from outreach.domain.rules import RuleEvent, evaluate
from outreach.errors import ConfigError
from outreach.services.contacts import show_contact
from tests.configs import edit_config
from tests.conftest import ROOT, Run, without_rules
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import Practice, reply

RULES = """
[[rules]]
on = "reply"
when = { segment = ["psychiatrist"], keywords = ["refer"] }
then = { set_stage = "engaged", add_tag = "warm", notify = true }

[[rules]]
on = "reply"
then = { add_tag = "replied-by-email", stop = true }

[[rules]]
on = "reply"
then = { add_tag = "never" }
"""


def rule(**data: object) -> Rule:
    return Rule.model_validate(data)


def event(text: str = "", **kw: object) -> RuleEvent:
    base: dict[str, object] = {
        "on": "reply",
        "segment": "psychiatrist",
        "stage": "replied",
        "tags": (),
        "sender_domain": "nb.example.com",
        "text": text,
    }
    base.update(kw)
    return RuleEvent(**base)  # type: ignore[arg-type]


class TestEvaluation:
    def test_conditions_all_hold(self) -> None:
        r = rule(
            on="reply",
            when={"segment": ["psychiatrist"], "keywords": ["Refer"]},
            then={"set_stage": "engaged"},
        )
        assert evaluate([r], event("I'd like to refer a patient")).set_stage == "engaged"
        assert evaluate([r], event("thanks")).set_stage is None
        assert evaluate([r], event("refer", segment="teacher")).set_stage is None
        assert evaluate([r], event("refer", on="bounce")).set_stage is None

    def test_regex_domain_and_tags(self) -> None:
        r = rule(
            on="reply",
            when={"regex": r"\bcall me\b", "sender_domain": ["NB.example.com"], "tags": ["vip"]},
            then={"notify": True},
        )
        assert evaluate([r], event("Please call me", tags=("vip",))).notify
        assert not evaluate([r], event("Please call me", tags=("other",))).notify

    def test_stop_ends_the_rules(self) -> None:
        rules = [
            rule(on="reply", then={"add_tag": "a", "stop": True}),
            rule(on="reply", then={"add_tag": "b"}),
        ]
        actions = evaluate(rules, event())
        assert (actions.add_tags, actions.rules) == (["a"], [0])


class TestValidation:
    def test_a_bad_rule_is_named_by_index_and_key(self, config_file: Path) -> None:
        config_file.write_text(
            without_rules(config_file.read_text())
            + """
[[rules]]
on = "reply"
then = { set_stage = "engaged" }

[[rules]]
on = "reply"
when = { regex = "(unclosed", segment = ["pastors"] }
then = { set_stage = "friends", reply_with = "thanks" }

[[rules]]
on = "replied"
then = { stop = true }
"""
        )
        with pytest.raises(ConfigError) as caught:
            load_config(config_file)
        problems = caught.value.problems
        assert any(
            p.startswith("rules[1].when.regex: not a valid regular expression") for p in problems
        )
        assert any(p.startswith("rules[2].on: must be one of 'reply'") for p in problems)

    def test_unknown_names_are_named(self, config_file: Path) -> None:
        config_file.write_text(
            without_rules(config_file.read_text())
            + """
[[rules]]
on = "reply"
when = { segment = ["pastors"], stage = ["replyed"] }
then = { set_stage = "friends", reply_with = "thanks", move_to = "Done" }

[[rules]]
on = "referral"
then = { notify = true }
"""
        )
        with pytest.raises(ConfigError) as caught:
            load_config(config_file)
        assert caught.value.problems == [
            "rules[0].then.set_stage: unknown stage 'friends'",
            "rules[0].when.stage[0]: unknown stage 'replyed'",
            "rules[0].when.segment[0]: unknown segment 'pastors'",
        ]


class TestOnRealServers:
    def test_a_reply_rule_moves_tags_and_notifies(
        self,
        outbound_config: Path,
        dovecot: object,
        smtp_sink: SmtpServer,
    ) -> None:
        outbound_config.write_text(outbound_config.read_text() + RULES)
        practice = Practice(outbound_config, dovecot)  # type: ignore[arg-type]
        try:
            before = len(smtp_sink.received)
            alma = practice.ids["alma@nb.example.com"]
            practice.deliver(
                reply(
                    "alma@nb.example.com",
                    alma,
                    "Happy to refer. My patient has severe panic attacks.",
                )
            )
            ((email, effect),) = practice.sync()
            assert email == "alma@nb.example.com"
            assert "rule 0, 1 on reply" in effect
            contact = (
                practice.store
                and __import__("outreach.services.contacts", fromlist=["x"])
                .show_contact(practice.store, email)
                .contact
            )
            assert contact.stage == "engaged"
            assert contact.tags == ["warm", "replied-by-email"]
            notices = smtp_sink.received[before:]
            assert len(notices) == 1
            assert notices[0].rcpt_tos == ["maya@calmharbor.example.com"]
            sent = message_from_bytes(notices[0].data)
            assert sent["Subject"] == "Reply from Alma Reyes (Psychiatrists)"
            assert alma in sent["References"]  # threads under our email, in a header only
            text = sent.get_payload(decode=True).decode()
            assert "Who: Alma Reyes, North Bay <alma@nb.example.com> (Psychiatrists)" in text
            assert "Stage now: engaged" in text
            assert 'It answers our intro, "' in text  # our subject and when we sent it
            assert "moved them from contacted to replied" in text
            assert "moved them to engaged (a rule)" in text
            assert "outreach stage set alma@nb.example.com engaged" in text
            assert "@" not in text.replace("alma@nb.example.com", "")  # no Message-IDs
            assert "panic" not in text  # never the reply's words
        finally:
            practice.store.close()


def test_a_rule_files_out_of_office_replies(
    outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer
) -> None:
    outbound_config.write_text(
        outbound_config.read_text()
        + """
[[rules]]
on = "out_of_office"
then = { move_to = "Away" }
"""
    )
    practice = Practice(outbound_config, dovecot)
    user, password = dovecot.user(3)
    try:
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            if not imap.folder_exists("Away"):
                imap.create_folder("Away")
        tom = practice.ids["tom@lm.example.org"]
        practice.deliver(
            reply(
                "tom@lm.example.org",
                tom,
                "I am on vacation until March 9.",
                subject="Automatic reply: Hello",
            )
        )
        practice.deliver(
            reply(
                "alma@nb.example.com",
                practice.ids["alma@nb.example.com"],
                "Sounds good.",
                message_id="<keep@x>",
            )
        )
        effects = [effect for _, effect in practice.sync()]
        assert effects[0].endswith("move to Away")
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            assert imap.select_folder("Away", readonly=True)[b"EXISTS"] == 1
            assert imap.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1  # the reply stays
            flags = imap.get_flags(imap.search("ALL"))
            assert all(b"\\Seen" not in f for f in flags.values())
    finally:
        practice.store.close()


def test_reply_with_sends_a_threaded_reply_under_the_sending_policy(
    outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer
) -> None:
    import asyncio
    from datetime import timedelta
    from email import message_from_bytes

    from outreach.runtime.parts import build_parts
    from tests.test_inbound import T0

    outbound_config.write_text(
        outbound_config.read_text()
        + """
[[rules]]
on = "reply"
when = { keywords = ["refer"] }
then = { set_stage = "engaged", reply_with = "thank_you" }
"""
    )
    practice = Practice(outbound_config, dovecot)
    try:
        alma_intro = practice.ids["alma@nb.example.com"]
        practice.deliver(reply("alma@nb.example.com", alma_intro, "I will refer someone to you."))
        ((_, effect),) = practice.sync()
        assert effect.endswith("stage engaged, reply thank_you queued")
        before = len(smtp_sink.received)
        dispatcher = build_parts(practice.settings, practice.store).dispatcher
        report = asyncio.run(dispatcher.run_pass(T0 + timedelta(hours=3)))
        assert [(line.email, line.step) for line in report.sent] == [("alma@nb.example.com", 1001)]
        sent = message_from_bytes(smtp_sink.received[before].data)
        assert sent["In-Reply-To"] == alma_intro
        assert sent["Subject"].startswith("Re: ")
        assert "Thank you for the referral." in sent.get_payload(decode=True).decode()
        assert show_contact(practice.store, "alma@nb.example.com").contact.stage == "engaged"
        # Once sent, never again.
        assert asyncio.run(dispatcher.run_pass(T0 + timedelta(hours=4))).sent == []
    finally:
        practice.store.close()


def test_referral_and_manual_stage_rules(
    config_file: Path,
    cli: Callable[..., Run],
    smtp_server: SmtpServer,
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = dovecot.user(1)
    edit_config(
        config_file,
        {
            "smtp.host": "127.0.0.1",
            "smtp.port": smtp_server.port,
            "smtp.username": user,
            "sender.notify_address": dovecot.user(2)[0],
            "rules": [
                {
                    "on": "referral",
                    "then": {"notify": True, "reply_with": "thank_you", "add_tag": "referrer"},
                },
                {
                    "on": "stage_changed",
                    "when": {"stage": ["do_not_contact"]},
                    "then": {"add_tag": "closed"},
                },
            ],
        },
        add={"smtp.ca_file": str(dovecot.cert)},
    )
    monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", password)
    monkeypatch.setenv("OUTREACH_TEMPLATES__DIR", str(ROOT / "templates"))
    (tmp_path / "c.csv").write_text(
        "email,first_name,last_name,segment\n"
        "grace@stm.example.org,Grace,Okafor,clergy\n"
        "tom@lm.example.org,Tom,Beaulieu,teacher\n"
    )
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
    run = cli("referrals", "add", "grace@stm.example.org", "--note", "by phone")
    assert run.exit_code == 0, run.output
    assert "rule 0 on referral" in run.stdout and "reply thank_you queued" in run.stdout
    assert len(smtp_server.received) == 1  # the notice to the therapist
    assert smtp_server.received[0].rcpt_tos == [dovecot.user(2)[0]]
    shown = cli("contacts", "show", "grace@stm.example.org", "--json").stdout
    assert '"referrer"' in shown and '"state": "queued"' in shown
    run = cli("stage", "set", "tom@lm.example.org", "do_not_contact", "--note", "asked by phone")
    assert "rule 1 on stage_changed" in run.stdout
    assert '"closed"' in cli("contacts", "show", "tom@lm.example.org", "--json").stdout
    assert cli("templates", "check").exit_code == 0
