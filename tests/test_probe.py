"""`tinylm probe`: labels read off m2 traces, features taken at the right tokens, and probes that
find a planted signal (near 100%) but not a shuffled one (chance)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from conftest import TINY_TRACE

from tinylm.cli import main
from tinylm.evaluate.probe import collect, fit_probe, probe, step_labels
from tinylm.evaluate.scoring import read_suite, split_example
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.tokens.tokenizer import keyword_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOK = keyword_tokenizer("m2")
TRACE = TINY_TRACE


def suite_of(tmp_path, n: int = 8):
    path = tmp_path / "suite.txt"
    path.write_text("".join(TRACE.replace("a = 1", f"a = {i % 3}").replace("a?1", f"a?{i % 3}") + "\n\n"
                            for i in range(n)))
    return path


def test_step_labels_of_an_m2_trace():
    assert step_labels(split_example(TRACE)[1]) == [
        {"line": 1, "state": {}}, {"line": 2, "state": {"a": 1}}, {"line": 3, "state": {"a": 1, "b": 1}}]


def test_features_are_taken_at_the_marker_and_at_each_step_start(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=24, n_layer=2, n_head=2, n_embd=16,
                          pos_encoding="alibi")).eval()   # no position embedding: layer 0 is the token's embedding
    rows = collect(model, TOK, read_suite(suite_of(tmp_path), TOK))
    value, line = rows["value"], rows["line"]
    assert value["x"].shape == (3, 8 * 3, 16) and line["x"].shape == (3, 8 * 3, 16)
    assert value["y"].tolist() == [v for i in range(8) for v in (i % 3, i % 3, 1)]   # a, then a and b
    assert value["name"][:3] == ["a", "a", "b"] and line["y"].tolist() == [1, 2, 3] * 8
    embed = model.wte.weight.detach()
    assert torch.allclose(value["x"][0], embed[TOK.token_id("@")].expand(24, 16))
    assert torch.allclose(line["x"][0], embed[TOK.token_id("# code\n")].expand(24, 16))


def test_probes_find_a_planted_signal_and_not_a_shuffled_one():
    g = torch.Generator().manual_seed(0)
    n, classes = 600, 5
    y = torch.randint(0, classes, (n,), generator=g)
    noise = torch.randn(2, n, 12, generator=g)
    planted = noise[1].clone()
    planted[:, :classes] += 6 * torch.nn.functional.one_hot(y, classes)   # layer 1 carries the label linearly
    rows = {"line": {"x": torch.stack([noise[0], planted]), "y": y, "example": list(range(n)), "name": [""] * n}}
    layers = probe(rows)["line"]["layers"]
    assert layers[1]["accuracy"] > 0.97 and layers[1]["control"] < 0.35
    assert layers[0]["accuracy"] < 0.35   # pure noise: chance is 0.2
    train = torch.arange(n) < n // 2
    assert (fit_probe(planted, y, train)[~train] == y[~train]).float().mean() > 0.97


def test_the_command_writes_table_plot_and_numbers(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg)
    save_checkpoint(tmp_path / "m.pt", model_config=asdict(cfg), model_state=model.state_dict(), tokenizer=TOK.to_dict())
    out = tmp_path / "out"
    assert main(["probe", "--checkpoint", str(tmp_path / "m.pt"), "--suite", str(suite_of(tmp_path)),
                 "--out", str(out)]) == 0
    data = json.loads((out / "probe.json").read_text())
    assert set(data["questions"]) == {"value", "line"}
    assert [r["layer"] for r in data["questions"]["line"]["layers"]] == [0, 1, 2]
    assert (out / "probe.png").read_bytes()[:4] == b"\x89PNG" and "| line | 2 |" in (out / "probe.md").read_text()
    demo = tmp_path / "demo.txt"   # a trace format without '@' markers
    demo.write_text("# code\na = 1\n#STEP\n# code\na = 1\n\n")
    capsys.readouterr()
    assert main(["probe", "--checkpoint", str(tmp_path / "m.pt"), "--suite", str(demo), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'@'" in err and not (tmp_path / "o2").exists()
