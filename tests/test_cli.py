"""The `tinylm` command: help, unknown commands, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

from tinylm.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_target_exists():
    import importlib

    for name, (target, _) in COMMANDS.items():
        module_name, func_name = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), func_name)), name


def test_user_error_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nope.txt"
    proc = subprocess.run([sys.executable, "-m", "tinylm.cli", "trace", "--format", "m2", str(missing),
                           str(tmp_path / "out.txt")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and str(missing) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.txt").exists()


def test_version_and_python_dash_m(capsys):
    from tinylm import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tinylm {__version__}"
    proc = subprocess.run([sys.executable, "-m", "tinylm", "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"tinylm {__version__}")
