"""Assembling one practice's parts from its configuration: the composition root where the mail
connections are built and handed to the services (the CLI, the daemon and the demo all start
here)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from outreach.config import Settings
from outreach.mail.abc import InboxSource, OpenSmtp
from outreach.mail.connections import inbox_source, open_smtp, sent_folder, sign_in
from outreach.mail.templates import TemplateSet
from outreach.services.dispatch import Dispatcher
from outreach.services.template_check import require_templates
from outreach.signin.tokens import AccessTokens
from outreach.store.database import Store

if TYPE_CHECKING:
    from outreach.services.inbound import InboundProcessor


@dataclass(frozen=True)
class Parts:
    """What one configuration builds over one store; the daemon replaces it whole on reload."""

    settings: Settings
    store: Store
    smtp: OpenSmtp
    inbox: InboxSource
    dispatcher: Dispatcher
    tokens: AccessTokens | None = None  # OAuth2 sign-in, when the mailbox uses it

    @cached_property
    def processor(self) -> InboundProcessor:
        """What reads inbound messages, built on first use: ``send-due`` never loads the
        classifiers."""
        from outreach.services.inbound import InboundProcessor  # noqa: PLC0415

        return InboundProcessor(self.store, self.settings, smtp=self.smtp)

    @property
    def templates(self) -> TemplateSet:
        return self.dispatcher.templates


def build_parts(settings: Settings, store: Store, *, smtp: OpenSmtp | None = None) -> Parts:
    """The services wired to the configured mail servers (``smtp``: another way to open SMTP
    sessions, such as the demo's)."""
    tokens = sign_in(settings)
    smtp = smtp or open_smtp(settings, tokens)
    templates = TemplateSet(settings.templates.dir)
    dispatcher = Dispatcher(
        store, settings, templates, smtp=smtp, sent_folder=sent_folder(settings, tokens)
    )
    return Parts(
        settings=settings,
        store=store,
        smtp=smtp,
        inbox=inbox_source(settings, tokens),
        dispatcher=dispatcher,
        tokens=tokens,
    )


def build_checked_parts(settings: Settings, store: Store, *, consequence: str) -> Parts:
    """``build_parts`` once every template renders; else ConfigError ending in ``consequence``."""
    parts = build_parts(settings, store)
    require_templates(store, settings, parts.templates, consequence=consequence)
    return parts
