"""Command-line plumbing every command shares: `ArgumentParser`, whose usage mistakes are one-line
errors, and `run_command`, which turns a `TinylmError` into one line `error: ...` and exit status 2."""

from __future__ import annotations

import argparse
import sys

from tinylm.base.errors import ConfigError, TinylmError


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a one-line ConfigError naming the command (exit status 2),
    not argparse's usage block."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def run_command(func, argv: list[str]) -> int:
    """func(argv)'s exit status; a TinylmError is one line `error: ...` and status 2, Ctrl-C status 130."""
    try:
        return int(func(argv) or 0)
    except TinylmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
