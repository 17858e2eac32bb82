"""The configuration's schema: every table and key, their defaults and validation (no I/O)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from outreach.config.problems import keyed_problems
from outreach.config.providers import OAuth2Provider, Provider, SignIn, apply_preset
from outreach.domain.fields import check_timezone, has_control_characters, normalize_email
from outreach.domain.pipeline import BUILTIN_STAGES, ExtraStage, Pipeline

ENV_PREFIX = "OUTREACH_"
CONFIG_ENV = "OUTREACH_CONFIG"
DEFAULT_LOCATIONS = (Path("config/outreach.toml"), Path("/etc/outreach/outreach.toml"))
DEFAULT_DATABASE_FILE = "outreach.sqlite3"
#: Credentials read from $CREDENTIALS_DIRECTORY, as ``<section>_<key>``.
SECRET_KEYS = ("smtp_password", "imap_password", "oauth2_client_secret")

# Every number has a bound: an absurd value (1e300, inf) must fail here, not deep in a pass.
MAX_COUNT = 1_000_000
DAY_SECONDS = 86_400.0
WEEK_MINUTES = 10_080.0
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
_DOMAIN = r"^$|^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"
Security = Literal["starttls", "tls", "none"]


class Section(BaseModel):
    """A config table: unknown keys are errors, because a typo must not pass silently."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _single_line(cls, value: Any) -> Any:
        if isinstance(value, str) and has_control_characters(value):
            raise ValueError("must be a single line without control characters")
        return value


class Practice(Section):
    """Who the practice is: the facts every message and template draws on."""

    name: str = Field(min_length=1)
    therapist: str = Field(min_length=1)
    credentials: str = ""
    ideal_client: str = Field(min_length=1)
    method: str = ""
    result: str = ""
    postal_address: str = Field(min_length=1)
    phone: str = ""
    website: str = ""
    timezone: str = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)


class Sender(Section):
    """The identity outreach mails come from, and where the therapist's notices go."""

    from_name: str = Field(min_length=1)
    from_address: str
    message_id_domain: str = Field(
        default="", pattern=r"^$|^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"
    )
    notify_address: str = ""

    @field_validator("from_address", "notify_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_email(value) if value else value

    @model_validator(mode="after")
    def _defaults(self) -> Sender:
        # Message-IDs default to the sender's domain; notices default to the sender.
        domain = self.message_id_domain or self.from_address.rpartition("@")[2]
        object.__setattr__(self, "message_id_domain", domain.lower())
        object.__setattr__(self, "notify_address", self.notify_address or self.from_address)
        return self


class Server(Section):
    """A mail server login; the password comes only from a credential or the environment.

    ``auth = "oauth2"`` signs in with SASL XOAUTH2 and an access token from ``[oauth2]``
    (``outreach auth login``) instead of a password."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str = ""
    password: SecretStr | None = None
    security: Security
    auth: SignIn = "password"
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)

    @property
    def is_loopback(self) -> bool:
        """Whether the server is on this machine (only then may ``security = "none"``)."""
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


class Smtp(Server):
    """Outgoing mail."""

    security: Security = "starttls"
    # SMTP sessions a dispatch pass opens side by side. A practice's mailbox provider limits
    # parallel sessions per account (Microsoft 365 allows 3 per mailbox), so 1 is the default;
    # a relay of the practice's own (Postfix, a transactional service) takes more.
    connections: int = Field(default=1, ge=1, le=8)

    @property
    def effective_port(self) -> int:
        """The configured port, else the standard one for the security mode (RFC 8314)."""
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.security]


class Imap(Server):
    """The practice's inbox, watched for replies."""

    security: Security = "tls"
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    # Empty: the folder the server marks SPECIAL-USE \Sent (RFC 6154), else "Sent".
    sent_folder: str = ""
    # outreach files a copy of each message it sends (plain SMTP servers don't).
    save_sent: bool = False
    # The provider files what is submitted over SMTP in Sent itself (Gmail, Exchange): no copy
    # is added, and after a crash outreach looks there for what left. Set by the presets.
    server_saves_sent: bool = False

    @property
    def effective_port(self) -> int:
        """The configured port, else the standard one for the security mode (RFC 8314)."""
        return self.port or {"tls": 993, "starttls": 143, "none": 143}[self.security]


class Mailbox(Section):
    """The practice's mailbox provider: its preset fills ``[smtp]`` and ``[imap]``."""

    provider: Provider = "custom"


class OAuth2(Section):
    """How outreach gets access tokens for XOAUTH2 (``outreach auth login``).

    Microsoft and Google know their own endpoints; ``custom`` names them. The client secret,
    where the provider needs one (Google), comes only from ``$CREDENTIALS_DIRECTORY/
    oauth2_client_secret`` or ``OUTREACH_OAUTH2__CLIENT_SECRET``."""

    provider: OAuth2Provider = "custom"
    client_id: str = ""  # checked where OAuth2 is used (Settings), with what to put here
    client_secret: SecretStr | None = None
    # Microsoft: the directory (tenant) ID or domain; "organizations" for any work account,
    # "consumers" for Outlook.com.
    tenant: str = Field(default="organizations", pattern=r"^[A-Za-z0-9.-]+$")
    # Microsoft: the sign-in host, for national clouds (https://login.microsoftonline.us).
    authority: str = Field(default="", pattern=r"^$|^https://[^/\s]+/?$")
    authorization_url: str = Field(default="", pattern=r"^$|^https?://\S+$")
    token_url: str = Field(default="", pattern=r"^$|^https?://\S+$")
    device_authorization_url: str = Field(default="", pattern=r"^$|^https?://\S+$")
    scopes: list[str] = Field(default_factory=list)
    # A private CA for the provider's endpoints (a test server, a TLS-inspecting proxy).
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _custom_endpoints(self) -> OAuth2:
        if self.provider != "custom":
            return self
        problems = []
        if not self.token_url:
            problems.append("token_url: a custom provider needs its token endpoint")
        if not (self.device_authorization_url or self.authorization_url):
            problems.append(
                "authorization_url: a custom provider needs device_authorization_url (device "
                "code flow) or authorization_url (browser sign-in)"
            )
        if not self.scopes:
            problems.append("scopes: a custom provider needs the scopes its mail servers want")
        for key in ("authorization_url", "token_url", "device_authorization_url"):
            url = getattr(self, key)
            if url.startswith("http://") and not _loopback_url(url):
                problems.append(f"{key}: must be https:// (http only for this machine)")
        if problems:
            raise keyed_problems(problems)
        return self


def _loopback_url(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "[::1]") or host.startswith("127.")


class Storage(Section):
    """Where contacts and history live; empty ``url`` means a SQLite file in the state directory."""

    url: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            try:
                backend = make_url(value).get_backend_name()
            except ArgumentError:
                raise ValueError(
                    "must be a database URL such as 'sqlite:///var/outreach.sqlite3' or "
                    "'postgresql+psycopg://user@host/dbname'"
                ) from None
            if backend not in ("sqlite", "postgresql"):
                raise ValueError(
                    f"{backend!r} is not a database outreach can use: 'sqlite:///...' or "
                    "'postgresql+psycopg://...'"
                )
        return value


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _weekdays() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


class Blackout(Section):
    """Dates (inclusive) when nothing is sent and no business day is counted."""

    start: date
    end: date
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.end < self.start:
            raise keyed_problems([f"end: {self.end} is before start {self.start}"])
        return self


class Sending(Section):
    """Sending policy: when, how fast, and how politely outreach sends."""

    # Imported contacts wait as "held" until `outreach approve` (init writes it on).
    hold_new: bool = False
    days: list[Weekday] = Field(default_factory=_weekdays, min_length=1)
    start_time: time = time(9, 0)
    end_time: time = time(16, 30)
    max_per_hour: int = Field(default=20, ge=0, le=MAX_COUNT)
    max_per_day: int = Field(default=80, ge=0, le=MAX_COUNT)
    min_gap_seconds: float = Field(default=90.0, ge=0, le=DAY_SECONDS)
    jitter_seconds: float = Field(default=60.0, ge=0, le=DAY_SECONDS)
    per_organization_per_day: int = Field(default=1, ge=0, le=MAX_COUNT)
    holidays_country: str = "US"
    holidays_subdivision: str = ""
    blackouts: list[Blackout] = Field(default_factory=list)
    no_response_after_business_days: int = Field(default=10, ge=0, le=365)
    retry_max_attempts: int = Field(default=6, ge=1, le=100)
    retry_first_minutes: float = Field(default=10.0, gt=0, le=WEEK_MINUTES)
    retry_max_minutes: float = Field(default=720.0, gt=0, le=WEEK_MINUTES)
    unsubscribe_url: str = Field(default="", pattern=r"^$|^https://\S+$")

    @model_validator(mode="after")
    def _window(self) -> Sending:
        if self.end_time <= self.start_time:
            raise keyed_problems([f"end_time: {self.end_time} must be after start_time"])
        if self.holidays_country:
            _check_holidays(self.holidays_country, self.holidays_subdivision)
        return self


def _check_holidays(country: str, subdivision: str) -> None:
    """A country (and subdivision) the holidays library knows. The country is looked up in
    its registry of codes; the first country table imports every country's module (8 MiB),
    so that waits for the first calendar, unless a subdivision must be checked against it."""
    from holidays.registry import EntityLoader  # noqa: PLC0415  (4 MiB; only when configured)

    if country not in EntityLoader.get_country_codes():
        raise keyed_problems([f"holidays_country: Country {country} not available"])
    if subdivision:
        import holidays  # noqa: PLC0415

        try:
            holidays.country_holidays(country, subdiv=subdivision)
        except NotImplementedError as exc:
            raise keyed_problems([f"holidays_subdivision: {exc}"]) from None


class ImportSettings(Section):
    """How contact files are read (``[import]`` in the file)."""

    # A column naming each contact's segment (Google Contacts' "Labels", Outlook's
    # "Categories"), read through ``segment_labels``; "" = the ``segment`` column.
    segment_column: str = ""
    # A label in that column -> a segment name; a segment's own ``label`` also works.
    segment_labels: dict[str, str] = Field(default_factory=dict)
    # The file's text encoding; "" = detected (UTF-8 with or without BOM, UTF-16, Windows-1252).
    encoding: str = ""


class Inbound(Section):
    """What inbound events do beyond the built-in effects."""

    out_of_office_pause_days: int = Field(default=7, ge=1, le=90)
    soft_bounces_before_bounced: int = Field(default=3, ge=1, le=20)
    poll_seconds: float = Field(default=60.0, ge=1, le=3600)
    # Read replies from this local Maildir instead of IMAP (mail delivered on this machine).
    maildir: Path | None = None
    # The authserv-id the practice's own provider stamps on Authentication-Results (RFC 8601),
    # e.g. "mx.google.com"; only its verdict is trusted. Empty: the headers are not read.
    authserv_id: str = Field(default="", pattern=_DOMAIN)


class Daemon(Section):
    """How ``outreach run`` schedules its work and reports to the therapist."""

    dispatch_every_seconds: float = Field(default=60.0, ge=1, le=3600)
    digest: bool = True
    digest_time: time = time(7, 30)  # in the practice's time zone
    digest_to: str = ""  # default: sender.notify_address
    startup_timeout_seconds: float = Field(default=300.0, ge=0, le=3600)

    @field_validator("digest_to")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_email(value) if value else value


class Templates(Section):
    """Where message templates live: ``<dir>/<segment>/<name>.txt.j2``, then ``_default/``."""

    dir: Path = Path("../templates")


class SequenceStep(Section):
    """One message of a segment's sequence."""

    template: Name
    delay_business_days: int = Field(ge=0, le=365)
    thread: bool = True


class Segment(BaseModel):
    """A kind of referral source: its label, its sequence, and free profile fields for templates.

    Profile fields (``needs = "..."``) are free, so a typo of a known key would pass as one;
    to stop that, a free key close to a known one is an error, and profile values must be
    text.
    """

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    label: str = Field(min_length=1)
    sequence: list[SequenceStep] = Field(default_factory=list)
    blackouts: list[Blackout] = Field(default_factory=list)
    # Keeping in touch once a source is engaged or referring: a check-in every N days (0: off).
    nurture_every_days: int = Field(default=0, ge=0, le=3650)
    nurture_template: Name = "nurture"

    @model_validator(mode="before")
    @classmethod
    def _profile_fields(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        known = list(cls.model_fields)
        problems = []
        for key, value in data.items():
            if key in known:
                continue
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            if near:
                problems.append(f"{key}: unknown key; did you mean {near[0]!r}?")
            elif not isinstance(value, str):
                problems.append(f"{key}: profile fields must be text")
            elif has_control_characters(value.strip()):
                problems.append(f"{key}: must be a single line without control characters")
        if problems:
            raise keyed_problems(problems)
        return data

    @property
    def profile(self) -> dict[str, str]:
        """The free fields templates use (``needs``, ``gains``, ``address_as``...)."""
        return dict(self.model_extra or {})


class ExtraStageConfig(Section):
    """A stage the practice adds to the pipeline."""

    name: Name
    after: str


class PipelineConfig(Section):
    """Pipeline additions."""

    extra_stages: list[ExtraStageConfig] = Field(default_factory=list)


RuleEventKind = Literal[
    "reply",
    "out_of_office",
    "auto_reply",
    "bounce",
    "unsubscribe",
    "complaint",
    "receipt",
    "challenge",
    "referral",
    "stage_changed",
]
#: Events and actions the rule engine accepts in this version (others are refused by name).
RULE_EVENTS_HANDLED: tuple[str, ...] = get_args(RuleEventKind)


class RuleWhen(Section):
    """Conditions, all of which must hold (an empty list places no condition)."""

    segment: list[str] = Field(default_factory=list)
    stage: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    sender_domain: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    regex: str = ""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RuleThen(Section):
    """Actions, applied in this order: stage, tags, pause, notify; ``stop`` ends the rules."""

    set_stage: str = ""
    add_tag: str = ""
    remove_tag: str = ""
    pause_days: int = Field(default=0, ge=0, le=365)
    notify: bool = False
    reply_with: str = Field(default="", pattern=r"^$|^[a-z][a-z0-9_-]*$", max_length=64)
    move_to: str = ""
    stop: bool = False


class Rule(Section):
    """A workflow rule: on an event, when conditions hold, then actions."""

    on: RuleEventKind
    when: RuleWhen = RuleWhen()
    then: RuleThen


class Settings(BaseSettings):
    """The whole configuration, validated. Built by ``load_config``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    practice: Practice
    sender: Sender
    mailbox: Mailbox = Mailbox()
    smtp: Smtp
    imap: Imap
    oauth2: OAuth2 | None = None
    storage: Storage = Storage()
    sending: Sending = Sending()
    templates: Templates = Templates()
    inbound: Inbound = Inbound()
    # ``[import]``: ``import`` is a Python keyword; read from the file only.
    import_: ImportSettings = Field(default_factory=ImportSettings, validation_alias="import")
    daemon: Daemon = Daemon()
    pipeline: PipelineConfig = PipelineConfig()
    segments: dict[Name, Segment] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)

    _path: Path = PrivateAttr(default=Path("outreach.toml"))
    # Set by the loader from $STATE_DIRECTORY (None: ``var/`` beside the config file).
    _state_directory: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_preset(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _sign_in(self) -> Settings:
        problems = []
        using = [name for name in ("smtp", "imap") if getattr(self, name).auth == "oauth2"]
        for name in using:
            if not getattr(self, name).username:
                problems.append(f"{name}.username: needed to sign in with OAuth2 (the mailbox)")
        if using and self.oauth2 is None:
            problems.append(
                f'oauth2: {using[0]}.auth is "oauth2", so an [oauth2] table with your app '
                'registration\'s client_id is needed (README, "Signing in with OAuth2")'
            )
        elif using and self.oauth2 is not None and not self.oauth2.client_id:
            problems.append(
                "oauth2.client_id: the client ID of the app registration outreach signs in "
                'with (Microsoft: its "Application (client) ID"; README, "Signing in with '
                'OAuth2")'
            )
        if problems:
            raise keyed_problems(problems)
        return self

    @model_validator(mode="after")
    def _stages(self) -> Settings:
        names = {s.name for s in self.pipeline.extra_stages}
        problems = []
        for i, stage in enumerate(self.pipeline.extra_stages):
            if stage.name in BUILTIN_STAGES:
                problems.append(f"pipeline.extra_stages[{i}].name: {stage.name!r} is built in")
            if stage.after not in BUILTIN_STAGES and stage.after not in names:
                problems.append(f"pipeline.extra_stages[{i}].after: unknown stage {stage.after!r}")
        problems += _rule_problems(self.rules, set(BUILTIN_STAGES) | names, set(self.segments))
        if problems:
            raise keyed_problems(problems)
        return self

    def placed(self, path: Path, state_directory: Path | None) -> Settings:
        """Record where this configuration was read from and the state directory the
        environment named (the loader's job; copies keep both)."""
        self._path = path
        self._state_directory = state_directory
        return self

    @property
    def path(self) -> Path:
        """The config file this was loaded from; relative paths in it are relative to its folder."""
        return self._path

    @property
    def the_pipeline(self) -> Pipeline:
        """The built-in stages plus the configured extra ones, in report order."""
        return Pipeline.with_extra(ExtraStage(s.name, s.after) for s in self.pipeline.extra_stages)

    def secret_values(self) -> list[str]:
        """The passwords' values (mail logins, database URL), so log output can mask them."""
        secret = self.oauth2.client_secret if self.oauth2 else None
        values = [
            p.get_secret_value()
            for p in (self.smtp.password, self.imap.password, secret)
            if p is not None
        ]
        database_password = make_url(self.database_url).password
        return [*values, *([str(database_password)] if database_password else [])]

    @property
    def digest_address(self) -> str:
        """Where the daily digest goes: ``daemon.digest_to``, else the notices' address."""
        return self.daemon.digest_to or self.sender.notify_address

    @property
    def state_directory(self) -> Path:
        """Home of the default SQLite file: ``$STATE_DIRECTORY`` as the loader found it, else
        ``var/`` by the config."""
        return self._state_directory or self.path.parent / "var"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the store, with a relative SQLite path made absolute."""
        if not self.storage.url:
            return f"sqlite:///{self.state_directory / DEFAULT_DATABASE_FILE}"
        url = make_url(self.storage.url)
        database = url.database or ""
        relative = database not in ("", ":memory:") and not Path(database).is_absolute()
        if url.get_backend_name() == "sqlite" and relative:
            url = url.set(database=str(self.path.parent / database))
        return url.render_as_string(hide_password=False)

    @property
    def database_label(self) -> str:
        """The store's URL for people to read: any password hidden."""
        return make_url(self.database_url).render_as_string(hide_password=True)


def _rule_problems(rules: list[Rule], stages: set[str], segments: set[str]) -> list[str]:
    """Rules that name an unknown stage or segment, or use what this version can't do."""
    problems = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if rule.on not in RULE_EVENTS_HANDLED:
            problems.append(f"{where}.on: {rule.on!r} rules are not supported yet")
        if rule.then.set_stage and rule.then.set_stage not in stages:
            problems.append(f"{where}.then.set_stage: unknown stage {rule.then.set_stage!r}")
        for j, stage in enumerate(rule.when.stage):
            if stage not in stages:
                problems.append(f"{where}.when.stage[{j}]: unknown stage {stage!r}")
        for j, segment in enumerate(rule.when.segment):
            if segment not in segments:
                problems.append(f"{where}.when.segment[{j}]: unknown segment {segment!r}")
    return problems
