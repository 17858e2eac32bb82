"""Personal data stays private: the config ``init`` writes, the state directory and the SQLite
store are the owner's alone whatever the umask, and ``config check`` warns about readable ones."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from outreach.config import load_config
from outreach.store.database import open_store
from tests.configs import edit_config
from tests.conftest import Run
from tests.test_init import FLAGS, run


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The common default umask, under which new files are readable by everyone."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def test_init_writes_a_private_config_and_the_first_command_a_private_store(
    tmp_path: Path, cli: Callable[..., Run]
) -> None:
    folder = tmp_path / "practice"
    assert run("init", str(folder), "--non-interactive", *FLAGS).exit_code == 0
    config = folder / "config" / "outreach.toml"
    assert (mode(config), mode(config.parent)) == ("0600", "0700")

    imported = cli("contacts", "import", str(folder / "contacts.csv"), config=config)
    assert imported.exit_code == 0, imported.output
    state = folder / "config" / "var"
    assert (mode(state), mode(state / "outreach.sqlite3")) == ("0700", "0600")


def test_init_force_makes_an_existing_config_private(tmp_path: Path) -> None:
    config = tmp_path / "config" / "outreach.toml"
    config.parent.mkdir()
    config.write_text("# an old config\n")
    assert mode(config) == "0644"
    assert run("init", str(tmp_path), "--non-interactive", "--force", *FLAGS).exit_code == 0
    assert mode(config) == "0600"


def test_first_open_of_the_store_makes_it_and_its_wal_private(tmp_path: Path) -> None:
    database = tmp_path / "state" / "outreach.sqlite3"
    store = open_store(f"sqlite:///{database}")
    try:
        with store.session() as session:  # a write: the -wal and -shm files exist until close
            session.execute(text("CREATE TABLE probe (x INTEGER)"))
        wal, shm = (database.with_name(database.name + s) for s in ("-wal", "-shm"))
        assert wal.exists() and shm.exists()
        assert [mode(p) for p in (database.parent, database, wal, shm)] == [
            "0700",
            "0600",
            "0600",
            "0600",
        ]
    finally:
        store.close()


def test_config_check_warns_about_a_readable_store_and_a_config_with_a_password(
    config_file: Path, cli: Callable[..., Run]
) -> None:
    from outreach.config.loading import permission_warnings

    settings = load_config(config_file)
    database = settings.state_directory / "outreach.sqlite3"
    database.parent.mkdir()
    sqlite3.connect(database).close()  # as an older outreach left it: 0644
    config_file.chmod(0o644)  # no password in it: the service's user must read it
    assert permission_warnings(settings) == [
        f"{database} (the contact store) is readable by other users on this machine "
        f"(mode 0644); make it private: chmod 600 {database}",
    ]
    database.chmod(0o640)  # the group is other users too
    assert "(mode 0640)" in permission_warnings(settings)[0]
    run = cli("config", "check")
    assert run.exit_code == 0  # a warning, not a failure
    assert f"warning: {database} (the contact store) is readable" in run.stderr
    database.chmod(0o600)
    assert permission_warnings(settings) == []

    edit_config(config_file, {"storage.url": "postgresql+psycopg://outreach:s3cret@db/outreach"})
    with_password = load_config(config_file)
    assert permission_warnings(with_password) == [
        f"{config_file} (the configuration, with the database password) is readable by other "
        f"users on this machine (mode 0644); make it private: chmod 600 {config_file}",
    ]
    config_file.chmod(0o600)
    assert permission_warnings(with_password) == []
