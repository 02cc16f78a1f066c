"""Bad input stops with one line `error: ...`, exit status 2 and nothing half-written: command-line
usage, dataset folders, checkpoints, evaluation suites, prompts, and the demo's stage scripts."""

from __future__ import annotations

import json
from pathlib import Path

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

    from tinylm.base.config import write_yaml

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


# ----------------------------------------------------------------------------- checkpoints and tokenizers


def swap_two_tokens(tokenizer: dict) -> dict:
    """The same tokenizer with two ids exchanged: same size, other identity."""
    tokens = list(tokenizer["tokens"])
    tokens[2], tokens[3] = tokens[3], tokens[2]
    return {**tokenizer, "tokens": tokens}


def trained_checkpoint(tmp_path) -> Path:
    from test_train import train

    return Path(train(tmp_path, max_steps=2, eval_interval=2)["out_dir"]) / "ckpt_00000002.pt"


def test_resume_and_init_from_refuse_a_dataset_with_another_tokenizer_of_the_same_size(tmp_path, capsys):
    ckpt = trained_checkpoint(tmp_path)
    manifest = json.loads((tmp_path / "toy" / "manifest.json").read_text())
    edit_manifest(tmp_path / "toy", tokenizer=swap_two_tokens(manifest["tokenizer"]))
    err = train_cli_error(capsys, tmp_path / "other", f"data.dataset={tmp_path / 'toy'}", f"init_from={ckpt}")
    assert f"{ckpt}: trained with tokenizer 'toy'" in err and "toy uses 'toy'" in err
    from test_train import tiny_config

    from tinylm.base.config import write_yaml

    write_yaml(tiny_config(tmp_path, max_steps=4, eval_interval=2), tmp_path / "cfg.yaml")
    before = ckpt.read_bytes()
    err = cli_error(capsys, ["train", str(tmp_path / "cfg.yaml"), "--resume"])
    assert f"{ckpt}: trained with tokenizer 'toy'" in err
    assert ckpt.read_bytes() == before and not (tmp_path / "run" / "ckpt_00000004.pt").exists()


def rewrite_checkpoint(path: Path, **changes) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del ckpt[key]
    torch.save(ckpt, path)


def test_eval_and_generate_refuse_a_checkpoint_whose_tokenizer_was_changed(tmp_path, capsys):
    import torch

    ckpt = trained_checkpoint(tmp_path)
    tokenizer = torch.load(ckpt, weights_only=True)["tokenizer"]
    rewrite_checkpoint(ckpt, tokenizer=swap_two_tokens(tokenizer))
    expected = f"{ckpt}: its tokenizer is not the one it was saved with"
    assert expected in cli_error(capsys, ["generate", "--checkpoint", str(ckpt), "--prompt", "abc"])
    suite = tmp_path / "suite.txt"
    suite.write_text("abc\n#STEP\ncde\n\n")
    out = tmp_path / "eval"
    assert expected in cli_error(capsys, ["eval", "--checkpoint", str(ckpt), "--suite", str(suite), "--out", str(out)])
    assert not out.exists()


def test_a_checkpoint_saved_without_an_identity_is_compared_by_its_whole_tokenizer(tmp_path, capsys):
    ckpt = trained_checkpoint(tmp_path)
    rewrite_checkpoint(ckpt, tokenizer_sha256=None)
    from test_train import train

    assert train(tmp_path, resume=True, max_steps=4, eval_interval=2)["step"] == 4  # the same tokenizer
    manifest = json.loads((tmp_path / "toy" / "manifest.json").read_text())
    edit_manifest(tmp_path / "toy", tokenizer=swap_two_tokens(manifest["tokenizer"]))
    err = train_cli_error(capsys, tmp_path / "ft", f"data.dataset={tmp_path / 'toy'}", f"init_from={ckpt}")
    assert "trained with tokenizer 'toy'" in err


# ----------------------------------------------------------------------------- evaluation and generation


def test_duplicate_suite_names_are_found_before_any_work(tmp_path, capsys, monkeypatch):
    from tinylm.model import checkpoint

    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("work began"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "test.txt").write_text("x\n#STEP\ny\n\n")
    first, second = str(tmp_path / "a" / "test.txt"), str(tmp_path / "b" / "test.txt")
    base = ["eval", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "out")]
    err = cli_error(capsys, [*base, "--suite", f"id={first}", "--suite", f"id={second}"])
    assert "two suites are named 'id'" in err
    err = cli_error(capsys, [*base, "--suite", first, "--suite", f"a-test={second}"])  # 'a-test' from the path
    assert "two suites are named 'a-test'" in err
    err = cli_error(capsys, [*base, "--suite", first, "--suite", str(tmp_path / "c" / "test.txt")])
    assert "c/test.txt: no such test file (suite c-test)" in err
    assert not (tmp_path / "out").exists()


def test_empty_prompt_is_refused(tmp_path, capsys):
    ckpt = trained_checkpoint(tmp_path)
    assert "--prompt is empty" in cli_error(capsys, ["generate", "--checkpoint", str(tmp_path / "none.pt"), "--prompt", ""])
    assert main(["generate", "--checkpoint", str(ckpt), "--prompt", "abc", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("abc")


# ----------------------------------------------------------------------------- the demo's stage scripts

DEMO = Path(__file__).resolve().parents[1] / "tinypy_code_tracing_demo"
SCRIPTS = ["1_data_generation/1_generate.py", "1_data_generation/2_trace.py", "1_data_generation/3_filter.py",
           "1_data_generation/4_prepare.py", "2_model_training/train.py", "3_inference/eval.py",
           "3_inference/sweep.py", "run_all.py"]


def script_error(capsys, monkeypatch, script: str, *args: str) -> str:
    """Run a demo script as `python SCRIPT ARGS` would, in-process; it must fail with one `error:` line."""
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", [str(DEMO / script), *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(DEMO / script), run_name="__main__")
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_demo_script_rejects_an_unknown_option(capsys, monkeypatch, script):
    assert "unrecognized arguments: --no-such-option" in script_error(capsys, monkeypatch, script, "--no-such-option")


@pytest.mark.parametrize("script", SCRIPTS[:4])
def test_data_stage_scripts_take_workers(capsys, monkeypatch, script):
    assert "--workers must be >= 1, got 0" in script_error(capsys, monkeypatch, script, "--workers", "0")


def test_train_script_takes_resume_and_overrides(tmp_path, capsys, monkeypatch, toy):
    from test_train import tiny_config

    from tinylm.base.config import write_yaml

    config = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path, max_steps=1, eval_interval=1), config)
    script = "2_model_training/train.py"
    err = script_error(capsys, monkeypatch, script, str(config), "--resume")
    assert "no checkpoint to resume from" in err  # --resume is not ignored
    err = script_error(capsys, monkeypatch, script, str(config), "max_steps=2", "oops")
    assert "train.py: 'oops' is not a key=value override" in err
    assert "unknown key 'optim.lrr'" in script_error(capsys, monkeypatch, script, str(config), "optim.lrr=1")
    assert not (tmp_path / "run").exists()


def test_eval_and_sweep_scripts_check_their_options(capsys, monkeypatch):
    assert "--out is set by eval.py" in script_error(capsys, monkeypatch, "3_inference/eval.py", "--out", "x")
    err = script_error(capsys, monkeypatch, "3_inference/eval.py", "configs/a.yaml", "configs/b.yaml")
    assert "one config at most" in err
    err = script_error(capsys, monkeypatch, "3_inference/eval.py", "--window")
    assert "eval.py: argument --window: expected one argument" in err
    err = script_error(capsys, monkeypatch, "3_inference/sweep.py", "--limit", "all")
    assert "sweep.py: argument --limit: invalid int value: 'all'" in err
