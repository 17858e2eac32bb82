"""The exceptions outreach raises; every message names the key, line or id at fault.

OutreachError
 ├── ConfigError                 the configuration can't be used (problems listed one per line)
 ├── StoreError                  the database can't be opened, migrated or written
 ├── ImportProblems              a CSV file has problems; nothing was imported
 ├── MailServerUnusable (ConnectionError)
 │    └── SignInNeeded           OAuth2: never signed in, or the provider refused the refresh
 ├── TemplateProblem
 ├── AlreadyRunning              another daemon holds this database
 ├── ContactNotFound (LookupError)
 └── InvalidStage (ValueError)
"""

from __future__ import annotations

from collections.abc import Sequence


class OutreachError(Exception):
    """Root of every error outreach reports to a person."""


class ConfigError(OutreachError):
    """The configuration is missing, unreadable or invalid.

    ``problems`` holds one line per problem, each starting with its key path
    (``segments.teacher.sequence[1].delay_business_days: must be >= 0``) or, for
    a file that can't be read at all, one plain sentence.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(OutreachError):
    """The contact store can't be opened, migrated or written."""


class ImportProblems(OutreachError):
    """A contacts file has problems; nothing was imported.

    ``problems`` holds one line per problem, each naming its line and column.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s); nothing was imported")


class ContactNotFound(OutreachError, LookupError):
    """No contact has the given email address."""

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"no contact with email {email!r}")


class InvalidStage(OutreachError, ValueError):
    """A stage name that the pipeline doesn't have."""

    def __init__(self, stage: str, known: Sequence[str]) -> None:
        self.stage = stage
        super().__init__(f"unknown stage {stage!r}; known stages: {', '.join(known)}")


class MailServerUnusable(OutreachError, ConnectionError):
    """A configured mail server can't be reached, isn't trusted, or refuses our login.

    ``transient`` is true when waiting may help (nothing listening yet, no route, a timeout),
    false when a person must act (login refused, untrusted certificate, missing folder).
    """

    def __init__(self, server: str, problem: str, *, transient: bool = False) -> None:
        self.server = server
        self.problem = problem
        self.transient = transient
        super().__init__(f"{server}: {problem}")


class SignInNeeded(MailServerUnusable):
    """OAuth2 sign-in is missing or was refused (revoked, expired, password changed): a person
    must run ``outreach auth login``. Sending and watching wait; nothing is lost."""

    def __init__(self, account: str, problem: str) -> None:
        super().__init__(f"sign-in for {account}", f"{problem}: run outreach auth login")


class AlreadyRunning(OutreachError):
    """Another ``outreach run`` already works on this database."""

    def __init__(self, database: str, pid: int | None) -> None:
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        super().__init__(
            f"another outreach daemon{holder} is already running on {database}; "
            "stop it first (systemctl stop outreach), or use another database"
        )


class TemplateProblem(OutreachError):
    """A template can't be rendered: names its file, line and what is wrong."""

    def __init__(self, template: str, problem: str, *, line: int | None = None) -> None:
        self.template = template
        self.line = line
        self.problem = problem
        where = f"{template}, line {line}" if line else template
        super().__init__(f"{where}: {problem}")
