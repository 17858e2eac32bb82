"""The sign-in kept on disk: ``oauth2-token.json`` in the state directory, mode 0600.

It holds the refresh token, the current access token and its expiry, who signed in and when,
and whether the provider refused the last refresh. Every process of one install (the daemon, a
``send-due`` by hand, ``auth status``) reads the same file, and refreshes under an exclusive
lock on it, so one refresh serves them all and a rotated refresh token is never lost.

A systemd credential ``$CREDENTIALS_DIRECTORY/oauth2_refresh_token`` seeds it: when that
credential changes (a new token put there by the administrator), it wins over the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

FILE_NAME = "oauth2-token.json"
CREDENTIAL = "oauth2_refresh_token"


@dataclass
class SignIn:
    """One mailbox's OAuth2 sign-in. Times are seconds since the epoch."""

    provider: str
    client_id: str
    refresh_token: str
    account: str = ""
    scopes: list[str] = field(default_factory=list)
    access_token: str = ""
    expires_at: float = 0.0
    obtained_at: float = 0.0  # when the current access token was issued
    signed_in_at: float = 0.0
    last_refresh: float = 0.0
    refused_at: float = 0.0  # the provider refused this refresh token (0: it didn't)
    refused_reason: str = ""
    seed: str = ""  # the hash of the credential this was seeded from, if it was

    def lifetime_left(self, now: float) -> float:
        """Seconds until the access token expires (negative once it has)."""
        return self.expires_at - now if self.access_token else -1.0


class TokenFile:
    """The sign-in file of one install, and the credential that may seed it."""

    def __init__(self, state_directory: Path, credentials: Path | None = None) -> None:
        self.path = state_directory / FILE_NAME
        self.credential = credentials / CREDENTIAL if credentials is not None else None

    @classmethod
    def for_environment(cls, state_directory: Path) -> TokenFile:
        """The file in ``state_directory``, seeded from ``$CREDENTIALS_DIRECTORY`` if set."""
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        return cls(state_directory, Path(credentials) if credentials else None)

    @property
    def location(self) -> str:
        """Where the refresh token is kept, for ``auth status``."""
        if self.credential is not None and self.credential.is_file():
            return f"{self.path} (seeded from the credential {self.credential})"
        return str(self.path)

    def read(self, provider: str, client_id: str) -> SignIn | None:
        """The sign-in, or None when nobody has signed in (or only a seed for another app)."""
        saved = self._load()
        seed = self._seed()
        if seed is not None and (saved is None or saved.seed != _digest(seed)):
            return SignIn(provider, client_id, seed, seed=_digest(seed))
        return saved

    def write(self, sign_in: SignIn) -> None:
        """Replace the file atomically, readable by this user only."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".oauth2-token-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(asdict(sign_in), out, indent=1)
            os.chmod(temporary, 0o600)
            _owned_like_directory(temporary)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def remove(self) -> bool:
        """Forget the sign-in; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the install's refresh lock (other processes wait for one refresh to finish)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        _owned_like_directory(str(lock))
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def _load(self) -> SignIn | None:
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable or half-written by hand: as good as not signed in
        known = {f.name for f in fields(SignIn)}
        if not isinstance(data, dict) or not data.get("refresh_token"):
            return None
        return SignIn(**{k: v for k, v in data.items() if k in known})

    def _seed(self) -> str | None:
        if self.credential is None:
            return None
        try:
            token = self.credential.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return token or None


def _owned_like_directory(path: str) -> None:
    """Run as root (``sudo outreach auth login`` beside a service with ``DynamicUser=``), give
    the file to the state directory's owner, the service's user: else it could not read it."""
    if os.geteuid() != 0:
        return
    directory = os.stat(os.path.dirname(path))
    os.chown(path, directory.st_uid, directory.st_gid)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
