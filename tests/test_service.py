"""The shipped systemd unit: ``systemd-analyze verify`` finds nothing, and the hardening holds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT

UNIT = ROOT / "outreach.service"
INSTALLED_AT = "/usr/local/bin/outreach"
MAX_EXPOSURE = 1.5


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit, with ExecStart's program pointed at this checkout's installed command
    (verify checks that the program exists; nothing else is changed)."""
    if shutil.which("systemd-analyze") is None:
        message = "systemd-analyze is missing (apt-get install systemd)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    command = Path(sys.prefix) / "bin" / "outreach"
    assert command.exists(), command
    text = UNIT.read_text()
    assert text.count(INSTALLED_AT) == 1
    copy = tmp_path / "outreach.service"
    copy.write_text(text.replace(INSTALLED_AT, str(command)))
    return copy


def test_systemd_analyze_verify_prints_nothing(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        cwd=unit.parent,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_security_exposure_is_at_most_one_and_a_half(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        cwd=unit.parent,
    )
    found = re.search(r"Overall exposure level for outreach\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_is_a_notify_service_with_a_watchdog_and_credentials() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=outreach",
        "ConfigurationDirectory=outreach",
        "LoadCredential=smtp_password:",
        "LoadCredential=imap_password:",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}" in text, line
    assert re.search(r"\nWatchdogSec=\S+", text)
