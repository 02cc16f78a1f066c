"""Bad input stops with one line `error: ...`, exit status 2 and nothing half-written: command-line
usage, dataset folders, checkpoints, evaluation suites, prompts, and the demo's stage scripts."""

from __future__ import annotations

import json

import numpy as np
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


# ----------------------------------------------------------------------------- dataset folders


def train_cli_error(capsys, tmp_path, *overrides: str) -> str:
    """`tinylm train` on the tiny config over tmp_path/toy: one-line error, and no run folder made."""
    from test_train import tiny_config

    from tinylm.config import write_yaml

    path = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path, max_steps=1, eval_interval=1), path)
    err = cli_error(capsys, ["train", str(path), *overrides])
    assert not (tmp_path / "run").exists()
    return err


@pytest.fixture
def toy(tmp_path):
    from test_data_batching import write_dataset

    return write_dataset(tmp_path / "toy")


def edit_manifest(folder, **changes) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_token_id_past_the_vocabulary(tmp_path, capsys, toy):
    ids = np.fromfile(toy / "train.bin", dtype=np.uint8)
    ids[123] = 16  # the toy vocabulary has 16 tokens
    ids.tofile(toy / "train.bin")
    err = train_cli_error(capsys, tmp_path)
    assert "train.bin: token id 16 at offset 123 is outside the manifest's vocabulary (vocab_size 16)" in err


def test_odd_sized_uint16_bin(tmp_path, capsys, toy):
    edit_manifest(toy, dtype="uint16")
    np.arange(7, dtype=np.uint8).tofile(toy / "val.bin")
    np.zeros(50, dtype=np.uint16).tofile(toy / "train.bin")
    assert "val.bin: 7 bytes is not a whole number of uint16 ids" in train_cli_error(capsys, tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("{not json", "manifest.json: malformed JSON"),
    ("[1, 2]", "manifest.json: expected a JSON object, got list"),
    ('{"tokenizer": {}, "vocab_size": 16}', "manifest.json: missing keys ['dtype']"),
    ('{"tokenizer": "toy", "vocab_size": 16, "dtype": "uint8"}', "tokenizer must be a mapping"),
    ('{"tokenizer": {}, "vocab_size": "16", "dtype": "uint8"}', "vocab_size must be a positive integer, got '16'"),
    ('{"tokenizer": {}, "vocab_size": 16, "dtype": "int8"}', "dtype 'int8' is not uint8, uint16 or uint32"),
    ('{"tokenizer": {}, "vocab_size": 300, "dtype": "uint8"}', "dtype uint8 cannot hold the ids of vocab_size 300"),
    ('{"tokenizer": {"kind": "char"}, "vocab_size": 16, "dtype": "uint8"}', "manifest.json: malformed tokenizer"),
])
def test_malformed_manifest(tmp_path, capsys, toy, text, expected):
    (toy / "manifest.json").write_text(text)
    assert expected in train_cli_error(capsys, tmp_path)


def test_manifest_vocab_size_against_its_tokenizer_and_the_config(tmp_path, capsys, toy):
    edit_manifest(toy, vocab_size=20)
    assert "vocab_size 20 but its tokenizer toy has 16 tokens" in train_cli_error(capsys, tmp_path)
    edit_manifest(toy, vocab_size=16)
    err = train_cli_error(capsys, tmp_path, "model.vocab_size=12")
    assert "model.vocab_size 12 is smaller than the dataset's 16" in err
