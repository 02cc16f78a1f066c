"""The TinyPy tokenizer study: one dataset prepared with the keyword, char, BPE or unigram tokenizer by
one config change (`tokenizer.kind`), trained and evaluated the same way; the evaluation scores
decoded text, so an identical generation scores identically whatever the tokenizer wrote it."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import model_that_writes

from tinylm.base.config import from_dict
from tinylm.data.datasets import build
from tinylm.decode.strategies import GenerateConfig
from tinylm.evaluate.scoring import EvalConfig, evaluate_checkpoint, evaluate_suite, split_example
from tinylm.lang.format import split_examples
from tinylm.model.checkpoint import save_checkpoint
from tinylm.tokens.load import tokenizer_from_dict
from tinylm.train.config import TrainConfig
from tinylm.train.loop import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the one line that changes between the arms of the study (the reference's 2026 study: vocab 512)
TOKENIZERS = {
    "keyword": ["tokenizer.kind=keyword"],
    "char": ["tokenizer.kind=char"],
    "bpe": ["tokenizer.kind=sentencepiece", "tokenizer.model_type=bpe", "tokenizer.vocab_size=120"],
    "unigram": ["tokenizer.kind=sentencepiece", "tokenizer.model_type=unigram", "tokenizer.vocab_size=120"],
}
SPEC = {"generator": {"preset": "demo", "overrides": {"demo": {"names": ["a", "b"], "max_digit": 3}}},
        "trace_format": "demo", "block_size": 0, "tokenizer": {"kind": "keyword", "vocab": "demo", "sample": 200},
        "splits": {"train": 150, "val": 20, "test": 4}, "seed": 5, "shard_size": 100}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    """The same dataset.yaml built once per tokenizer, with its overrides."""
    root = tmp_path_factory.mktemp("study")
    folders = {}
    for name, overrides in TOKENIZERS.items():
        folder = root / name
        folder.mkdir()
        (folder / "dataset.yaml").write_text(yaml.safe_dump(SPEC))
        build(folder, 1, False, overrides)
        folders[name] = folder
    return folders


def test_one_config_change_gives_each_tokenizer_and_the_same_examples(datasets):
    kinds = {name: json.loads((f / "manifest.json").read_text())["tokenizer"]["kind"] for name, f in datasets.items()}
    assert kinds == {"keyword": "keyword", "char": "char", "bpe": "sentencepiece", "unigram": "sentencepiece"}
    tests = {name: (f / "test.txt").read_text() for name, f in datasets.items()}
    assert len(set(tests.values())) == 1  # the tokenizer changes the ids, not the examples
    for folder in datasets.values():
        tok = tokenizer_from_dict(json.loads((folder / "manifest.json").read_text())["tokenizer"])
        examples = split_examples(tests["keyword"])
        assert tok.decode(tok.encode_examples(examples)) == "".join(e + "\n\n" for e in examples)


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_each_arm_trains_and_evaluates(datasets, name, tmp_path):
    folder = datasets[name]
    cfg = from_dict(TrainConfig, dict(
        model={"preset": "demo", "n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64}, max_steps=4,
        batch_size=8, eval_interval=4, eval_tokens=1024, data={"dataset": str(folder)}, optim={"warmup_steps": 1},
        out_dir=str(tmp_path / "run"), device="cpu", log={"progress": False, "tensorboard": False}))
    assert run(cfg)["step"] == 4
    summary = evaluate_checkpoint(tmp_path / "run" / "best.pt", [f"id={folder / 'test.txt'}"], tmp_path / "eval",
                                  EvalConfig(batch_size=4, limit=2), log=lambda *_: None)
    [suite] = summary["suites"]
    assert suite["n"] == 2 and math.isclose(sum(suite[f"{c}_pct"] for c in ("hard", "soft", "failure")), 100)


def test_an_identical_generation_scores_identically_whatever_the_tokenizer(datasets, tmp_path):
    examples = split_examples((datasets["keyword"] / "test.txt").read_text())
    shortest = min(examples, key=len)
    prompt, target = split_example(shortest)
    steps = target.split("\n#STEP\n")
    wrong_step = prompt + "\n#STEP\n".join([steps[0].replace("=", "= 1 +", 1), *steps[1:]])
    assert wrong_step != shortest
    suite = tmp_path / "suite.txt"
    suite.write_text(shortest + "\n\n")
    scored = {}
    for name, folder in datasets.items():
        tok = tokenizer_from_dict(json.loads((folder / "manifest.json").read_text())["tokenizer"])
        for label, text in (("exact", shortest), ("wrong step", wrong_step)):
            model = model_that_writes(tok, text)
            path = tmp_path / f"{name}.pt"
            save_checkpoint(path, model_config=vars(model.config), model_state=model.state_dict(), tokenizer=tok.to_dict())
            out = tmp_path / name / label.replace(" ", "_")
            evaluate_suite(model, tok, suite, out, EvalConfig(batch_size=1, decoding=GenerateConfig(speculate=0)), log=lambda *_: None)
            [record] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
            assert record["generated"] == split_example(text)[1]
            scored[name, label] = {k: v for k, v in record.items() if not k.startswith("n_")}
    for label in ("exact", "wrong step"):
        assert len({json.dumps(scored[name, label], sort_keys=True) for name in TOKENIZERS}) == 1
    assert scored["char", "exact"]["class"] == "hard" and scored["char", "wrong step"]["class"] == "soft"
    assert scored["char", "wrong step"]["first_wrong_step"] == 0
