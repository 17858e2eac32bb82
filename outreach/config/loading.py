"""Loading the configuration: finding the file, reading TOML, credentials, relative paths, and
checking the files it names."""

from __future__ import annotations

import json
import os
import shlex
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from outreach import redact
from outreach.config.problems import describe_validation_errors
from outreach.config.schema import (
    CONFIG_ENV,
    DEFAULT_LOCATIONS,
    ENV_PREFIX,
    SECRET_KEYS,
    Server,
    Settings,
    Templates,
)
from outreach.errors import ConfigError

STORAGE_ENV = f"{ENV_PREFIX}STORAGE__URL"
#: OUTREACH_ variables that are not settings.
NOT_SETTINGS = frozenset({CONFIG_ENV, "OUTREACH_NOW"})


def find_config_file(explicit: Path | None = None, cwd: Path | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$OUTREACH_CONFIG``, else the default places."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    base = cwd or Path.cwd()
    for candidate in DEFAULT_LOCATIONS:
        path = candidate if candidate.is_absolute() else base / candidate
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in DEFAULT_LOCATIONS)
    raise ConfigError(
        [
            f"No config file found: give --config PATH or set ${CONFIG_ENV} "
            f"(also looked in {looked}); start from config/outreach.example.toml."
        ]
    )


def load_config(explicit: Path | None = None) -> Settings:
    """Find, read and validate the configuration, or raise ConfigError listing every problem."""
    path = find_config_file(explicit).absolute()
    data = _read_toml(path)
    problems = _misplaced_secrets(data) + _unknown_variables()
    _add_credentials(data)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems += describe_validation_errors(exc)
    except SettingsError as exc:
        problems += _unreadable_variables(exc)
    if problems:
        raise ConfigError(problems)
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return _resolve_paths(settings.placed(path, Path(state) if state else None))


def _unknown_variables() -> list[str]:
    """``OUTREACH_*`` variables that name no setting: a typo must not pass silently (keys
    below a known section are checked by the schema, like the file's)."""
    sections = set(Settings.model_fields)
    problems = []
    for name in sorted(os.environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        section = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if section == "import":
            problems.append(f"${name}: [import] is read from the config file only")
        elif section not in sections:
            problems.append(
                f"${name}: no such setting (settings are {ENV_PREFIX}SECTION__KEY, with SECTION "
                f"one of {', '.join(sorted(sections))}; also {', '.join(sorted(NOT_SETTINGS))})"
            )
    return problems


def _unreadable_variables(exc: SettingsError) -> list[str]:
    """The variables behind pydantic-settings' "error parsing value for field ...": those of
    that section whose value is not the JSON a list or table takes."""
    field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
    prefix = f"{ENV_PREFIX}{field.upper()}__"
    names = [n for n in sorted(os.environ) if n.upper().startswith(prefix)]
    unreadable = [
        n
        for n in names
        if _takes_json(field, n[len(prefix) :].split("__")[0]) and not _json(os.environ[n])
    ] or names  # deeper keys (a segment's own tables): name them all
    return [
        f"${n}: can't be read as this setting's type (lists and tables are JSON, "
        f'e.g. \'["INBOX", "Referrals"]\')'
        for n in unreadable or [f"{ENV_PREFIX}{field.upper()}"]
    ]


def _takes_json(section: str, key: str) -> bool:
    """Whether ``[section] key`` is a list or a table (read from the environment as JSON)."""
    model = Settings.model_fields.get(section.lower())
    table = model.annotation if model is not None else None
    fields = getattr(table, "model_fields", {})
    annotation = fields[key.lower()].annotation if key.lower() in fields else None
    return get_origin(annotation) in (list, dict) or hasattr(annotation, "model_fields")


def _json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"Config file {path} does not exist."])
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError([f"Config file {path} is a directory, not a file."]) from None
    except OSError as exc:
        raise ConfigError([f"Config file {path} can't be read: {exc.strerror}."]) from None
    except UnicodeDecodeError as exc:
        line = text_line_of_offset_bytes(path.read_bytes(), exc.start)
        raise ConfigError([f"Config file {path} is not UTF-8 text (line {line})."]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"Config file {path} is not valid TOML: {exc}."]) from None


def text_line_of_offset_bytes(data: bytes, offset: int) -> int:
    """The 1-based line number holding byte ``offset`` of ``data``."""
    return data.count(b"\n", 0, offset) + 1


def _misplaced_secrets(data: dict[str, Any]) -> list[str]:
    problems = []
    for section, key in (("smtp", "password"), ("imap", "password"), ("oauth2", "client_secret")):
        table = data.get(section)
        if isinstance(table, dict) and key in table:
            what = "passwords" if key == "password" else "secrets"
            problems.append(
                f"{section}.{key}: {what} don't belong in the config file; put it in "
                f"$CREDENTIALS_DIRECTORY/{section}_{key} (systemd LoadCredential=) or "
                f"the environment variable {ENV_PREFIX}{section.upper()}__{key.upper()}"
            )
            del table[key]
    return problems


def _add_credentials(data: dict[str, Any]) -> None:
    """Passwords and the OAuth2 client secret from systemd credentials
    (``LoadCredential=smtp_password:...``). A client secret counts only beside an ``[oauth2]``
    table.

    They sit below the environment, so ``OUTREACH_SMTP__PASSWORD`` still wins.
    """
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return
    for name in SECRET_KEYS:
        file = Path(directory) / name
        section, key = name.split("_", 1)
        if not file.is_file() or (section == "oauth2" and section not in data):
            continue
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = file.read_text(encoding="utf-8").rstrip("\r\n")


def _resolve_paths(settings: Settings) -> Settings:
    base = settings.path.parent
    updates: dict[str, Any] = {}
    for name in ("smtp", "imap"):
        server: Server = getattr(settings, name)
        if server.ca_file is not None and not server.ca_file.is_absolute():
            updates[name] = server.model_copy(update={"ca_file": base / server.ca_file})
    oauth2 = settings.oauth2
    if oauth2 is not None and oauth2.ca_file is not None and not oauth2.ca_file.is_absolute():
        updates["oauth2"] = oauth2.model_copy(update={"ca_file": base / oauth2.ca_file})
    if not settings.templates.dir.is_absolute():
        updates["templates"] = Templates(dir=base / settings.templates.dir)
    maildir = settings.inbound.maildir
    if maildir is not None and not maildir.is_absolute():
        updates["inbound"] = settings.inbound.model_copy(update={"maildir": base / maildir})
    if not updates:
        return settings
    return settings.model_copy(update=updates)  # the copy keeps path and state directory


def check_config_files(settings: Settings) -> list[str]:
    """Problems with the files and folders the configuration points at (one sentence each)."""
    problems = []
    for name in ("smtp", "imap", "oauth2"):
        ca_file = getattr(getattr(settings, name), "ca_file", None)
        if ca_file is not None and not ca_file.is_file():
            problems.append(f"{name}.ca_file: {ca_file} does not exist")
    for name in ("smtp", "imap"):
        server: Server = getattr(settings, name)
        if server.security == "none" and not server.is_loopback:
            problems.append(
                f"{name}.security: 'none' sends the password in the clear; it is allowed "
                f"only for a server on this machine (127.0.0.1, localhost), not {server.host!r}"
            )
    maildir = settings.inbound.maildir
    if maildir is not None and not (maildir / "cur").is_dir():
        problems.append(f"inbound.maildir: {maildir} is not a Maildir (no cur/ folder in it)")
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        problem = check_writable_directory(Path(url.database).parent)
        if problem:
            problems.append(problem)
    return problems


def check_writable_directory(directory: Path) -> str | None:
    """None if outreach can create files in ``directory`` (made if missing), else why not."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # the store's: personal data
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".outreach-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return (
            f"The state directory {directory} is not writable ({reason}); fix its "
            f"permissions, set $STATE_DIRECTORY, or set [storage] url."
        )
    return None


def permission_warnings(settings: Settings) -> list[str]:
    """Warnings, one sentence each, for the SQLite store (with its -wal, -shm and -journal)
    and a config file holding the database password, when other users on this machine can
    read them. Files not there are skipped.

    A config without a password may be readable: the service's own user must read the one
    in /etc/outreach, and what it holds (the practice's name and address) is in every
    message's footer anyway; mail passwords are never in it."""
    files = []
    # (With $OUTREACH_STORAGE__URL set, the password comes from the environment, not the file.)
    password = bool(settings.storage.url) and make_url(settings.storage.url).password
    if password and STORAGE_ENV not in os.environ:
        files.append((settings.path, "the configuration, with the database password"))
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        files += [
            (database.with_name(database.name + suffix), "the contact store")
            for suffix in ("", "-wal", "-shm", "-journal")
        ]
    warnings = []
    for path, what in files:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o044:
            warnings.append(
                f"{path} ({what}) is readable by other users on this machine "
                f"(mode {mode:04o}); make it private: chmod 600 {shlex.quote(str(path))}"
            )
    return warnings


def load_checked(explicit: Path | None = None) -> Settings:
    """The configuration with the files and folders it names checked, and its secrets masked
    in every log line from now on: what the CLI and the daemon start from. Raises ConfigError."""
    settings = load_config(explicit)
    problems = check_config_files(settings)
    if problems:
        raise ConfigError(problems)
    redact.hide(settings.secret_values())
    return settings
