"""The command line shell: help, version, user errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from caloforge import __version__
from caloforge.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_the_pipeline_commands(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from caloforge.cli import COMMAND_MODULES

    assert main([]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\w+)\s", out, flags=re.MULTILINE)  # the sub-command table
    for command in ("simulate", "info", "validate", "quantize", "demo"):
        assert command in listed, (command, listed)
    # in pipeline order, and only real sub-commands
    assert listed == [c for c in COMMAND_MODULES if c in listed]


def test_module_entry_point_reports_user_error_without_traceback(tmp_path) -> None:
    missing = tmp_path / "missing.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "caloforge", "info", str(missing)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(missing) in lines[0]
