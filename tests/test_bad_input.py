"""Bad input stops with one line `error: ...`, exit status 2 and nothing half-written: command-line
usage, dataset folders, checkpoints, evaluation suites, prompts, and the demo's stage scripts."""

from __future__ import annotations

import pytest

from tinylm.cli import main


def cli_error(capsys, argv: list[str]) -> str:
    """Run `tinylm ARGV` in-process; it must fail with exit status 2 and exactly one `error:` line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------------------- usage mistakes


@pytest.mark.parametrize("argv, expected", [
    (["train", "cfg.yaml", "--bogus"], "tinylm train: unrecognized arguments: --bogus"),
    (["train"], "tinylm train: the following arguments are required: config"),
    (["eval", "--checkpoint", "c.pt", "--out", "o", "--limit", "many"], "--limit: invalid int value: 'many'"),
    (["eval", "--checkpoint", "c.pt", "--sweep", "run", "--out", "o"], "not allowed with argument"),
    (["generate", "--checkpoint", "c.pt"], "tinylm generate: the following arguments are required: --prompt"),
    (["generate", "--checkpoint", "c.pt", "--prompt"], "--prompt: expected one argument"),
    (["report"], "tinylm report: the following arguments are required: folder"),
    (["tokenize", "in.txt", "out.bin", "extra"], "tinylm tokenize: unrecognized arguments: extra"),
    (["trace", "--format", "nope", "a.txt", "b.txt"], "tinylm trace: argument --format: invalid choice: 'nope'"),
    (["filter", "--block-size", "x", "--vocab", "m2", "a", "b"], "tinylm filter: argument --block-size"),
    (["import-reference", "best-model.pth"], "tinylm import-reference: the following arguments are required: dst"),
    (["data"], "tinylm data: the following arguments are required: command"),
    (["data", "frob"], "tinylm data: argument command: invalid choice: 'frob'"),
    (["data", "build", "datasets/demo", "--bogus"], "tinylm data build: unrecognized arguments: --bogus"),
    (["data", "generate", "demo", "out.txt", "--count", "x"], "tinylm data generate: argument --count"),
    (["frob"], "unknown command 'frob'"),
])
def test_usage_mistakes_are_one_line_errors(capsys, argv, expected):
    assert expected in cli_error(capsys, argv)


@pytest.mark.parametrize("stage", [["build", "FOLDER"], ["generate", "demo", "OUT"], ["trace", "SRC", "OUT"]])
def test_zero_workers_is_refused_before_any_work(tmp_path, capsys, stage):
    argv = [str(tmp_path / a) if a.isupper() else a for a in stage]
    assert "--workers must be >= 1, got 0" in cli_error(capsys, ["data", *argv, "--workers", "0"])
    assert list(tmp_path.iterdir()) == []
