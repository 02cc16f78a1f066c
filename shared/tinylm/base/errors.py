"""The project's error types: each carries one line a user can act on.

The CLI prints `error: <message>` for any `TinylmError` and exits with status 2; everything
else is a bug and keeps its traceback.
"""


class TinylmError(Exception):
    """Base class: a problem with the user's input, config or files, not a bug."""


class ConfigError(TinylmError):
    """A config file or override is malformed, has an unknown key, or a bad value."""


class DataError(TinylmError):
    """An input data file is missing, malformed or inconsistent."""


class TinyPySyntaxError(TinylmError):
    """A program is outside the TinyPy language; names the line, the column and what was expected."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


class TokenizeError(TinylmError):
    """Text holds something the tokenizer has no token for."""
