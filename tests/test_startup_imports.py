"""What start-up imports: ``outreach --help`` and ``outreach run`` leave the heavy libraries for
the commands and the moments that need them (Alembic for a migration, Rich for a table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from outreach.store.database import Store, _alembic_config, _known_head, open_store

NOT_AT_START = ("alembic", "mako", "pygments", "rich", "holidays.countries", "charset_normalizer")
# What reads inbound mail: a send-due never needs it.
CLASSIFIERS = ("outreach.domain.classify", "outreach.services.inbound", "flufl.bounce")


def imported_by(code: str, watched: tuple[str, ...] = NOT_AT_START) -> set[str]:
    """The modules of ``watched`` a fresh interpreter has loaded after ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split()) & set(watched)


class TestStartUp:
    def test_the_daemon_and_the_cli_import_none_of_the_heavy_libraries(self) -> None:
        assert imported_by("import outreach.cli, outreach.runtime.daemon") == set()

    def test_help_builds_every_command_without_rich(self) -> None:
        code = (
            "import contextlib, io\nfrom outreach.cli import app\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    app(['--help'])"
        )
        assert imported_by(code) == set()

    def test_the_parts_a_send_due_builds_leave_the_classifiers(self) -> None:
        code = (
            "import outreach.cli.outbound\n"
            "from outreach.runtime.parts import build_parts, build_checked_parts"
        )
        assert imported_by(code, CLASSIFIERS) == set()

    def test_a_database_at_head_opens_without_alembic(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path}/outreach.db"
        open_store(url).close()  # creates and migrates: Alembic runs here
        assert (
            imported_by(f"from outreach.store.database import open_store\nopen_store({url!r})")
            == set()
        )


class TestHeadRevision:
    def test_the_migration_files_head_is_alembics(self) -> None:
        from alembic.script import ScriptDirectory

        assert _known_head() == ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert Store.head_revision() == _known_head()
