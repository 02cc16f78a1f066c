"""The demo's one-shot command runs every stage end to end (smoke config) and prints the scores
that its per-example results add up to.

It runs in a copy of the demo project and the demo dataset spec, so the checkout stays clean.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO
from test_evaluate import pixels_of

from tinylm.lang.format import split_examples

SCORE_LINE = re.compile(r"^(\d+) test examples \(([\w-]+) window\): hard match ([\d.]+)% \| "
                        r"soft match ([\d.]+)% \| failure ([\d.]+)%$", re.M)


def assert_scores_printed(stdout: str, results, window: str, n: int, test_examples: list[str]) -> None:
    """The printed score line is the count of the per-example results, which cover the first n test examples."""
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["prompt"] + r["target"] for r in records] == test_examples[:n]
    assert all((r["class"] == "hard") == (r["generated"] == r["target"] and r["stopped"]) for r in records)
    pct = {c: 100 * sum(r["class"] == c for r in records) / n for c in ("hard", "soft", "failure")}
    found = SCORE_LINE.findall(stdout)
    assert found == [(str(n), window, f"{pct['hard']:.2f}", f"{pct['soft']:.2f}", f"{pct['failure']:.2f}")]


@pytest.mark.slow
def test_run_all_smoke_goes_from_yaml_to_scores(tmp_path):
    (tmp_path / "datasets" / "demo").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "datasets" / "demo" / "dataset.yaml", tmp_path / "datasets" / "demo")
    shutil.copytree(REPO / "tinypy_code_tracing_demo", tmp_path / "tinypy_code_tracing_demo",
                    ignore=shutil.ignore_patterns("runs", "__pycache__"))
    demo = tmp_path / "tinypy_code_tracing_demo"

    proc = subprocess.run([sys.executable, str(demo / "run_all.py"), "smoke"],
                          capture_output=True, text=True, timeout=900)

    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = tmp_path / "datasets" / "demo"
    splits = yaml.safe_load((data / "dataset.yaml").read_text())["splits"]
    test_examples = split_examples((data / "test.txt").read_text())
    assert len(test_examples) == splits["test"]
    assert {"train.bin", "val.bin", "manifest.json"} <= {p.name for p in data.iterdir()}
    # training: 20 steps, validated at 10 and 20; best.pt holds the lower of the two losses
    run = demo / "2_model_training" / "runs" / "smoke"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 21))
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert sorted(val) == [10, 20]
    best = torch.load(run / "best.pt", weights_only=True)["train_state"]
    assert best["val_loss"] == min(val.values()) and best["step"] == min(val, key=val.get)
    # evaluation: the score line counts the per-example results of the first 32 test programs
    assert_scores_printed(proc.stdout, demo / "3_inference" / "runs" / "smoke" / "demo" / "results.jsonl",
                          "step-anchored", 32, test_examples)

    exact = subprocess.run([sys.executable, str(demo / "3_inference" / "eval.py"),
                            "--limit", "4", "configs/smoke.yaml", "--window", "reference"],
                           capture_output=True, text=True, timeout=300)
    assert exact.returncode == 0, exact.stdout[-2000:] + exact.stderr[-2000:]
    assert_scores_printed(exact.stdout, demo / "3_inference" / "runs" / "smoke-reference" / "demo" / "results.jsonl",
                          "reference", 4, test_examples)

    sweep = subprocess.run([sys.executable, str(demo / "3_inference" / "sweep.py"),
                            "configs/smoke.yaml", "--limit", "4"], capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    out = demo / "3_inference" / "runs" / "smoke" / "sweep"
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["step"] for r in rows] == [20]  # keep_last: 1
    scored = [json.loads(line) for line in (out / "ckpt_00000020" / "demo" / "results.jsonl").read_text().splitlines()]
    hard = 100 * sum(r["class"] == "hard" for r in scored) / 4
    assert rows[0]["suites"]["demo"]["hard_pct"] == hard
    assert "| ckpt_00000020.pt | 20 |" in (out / "sweep.md").read_text()
    ys, xs = pixels_of(out / "hard_match.png", "C0")  # the one checkpoint's marker, in both panels
    assert (xs < 600).any() and (xs > 600).any()


def test_run_all_rejects_an_unknown_config(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tinypy_code_tracing_demo" / "run_all.py"), "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "error: run_all.py: no config 'nope' (choose from cpu, gpu, smoke) (see run_all.py --help)\n"


@pytest.mark.parametrize("config", sorted((REPO / "tinypy_code_tracing_demo" / "2_model_training" / "configs")
                                          .glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_demo_config_loads_and_builds_its_model(config):
    from tinylm.base.config import load_config
    from tinylm.model.gpt import GPT
    from tinylm.train.config import TrainConfig, resolve_model_config

    cfg = load_config(TrainConfig, config, [])
    cfg.validate()
    model = GPT(resolve_model_config(cfg, vocab_size=77, where=str(config)))
    if config.stem == "cpu":  # the model the demo README's numbers were measured with
        assert (model.config.pos_encoding, model.config.mlp_ratio, model.num_params()) == ("alibi", 2, 808_653)


def test_the_muon_timing_command_in_benchmarks_trains_the_reference_architecture():
    """BENCHMARKS.md times Muon on the reference architecture with a command on today's cpu.yaml."""
    from tinylm.base.config import load_config
    from tinylm.model.gpt import GPT
    from tinylm.train.config import TrainConfig, resolve_model_config

    text = (REPO / "BENCHMARKS.md").read_text()
    command = re.search(r"`python tinypy_code_tracing_demo/2_model_training/train.py ([^`]*optim.name=muon[^`]*)`",
                        text).group(1).split()
    config = REPO / "tinypy_code_tracing_demo" / "2_model_training" / command[0]
    cfg = load_config(TrainConfig, config, command[1:])
    cfg.validate()
    model = GPT(resolve_model_config(cfg, vocab_size=77, where=str(config)))
    assert (model.config.pos_encoding, model.config.mlp_ratio, model.num_params()) == ("learned", 4, 1_218_253)
    assert (cfg.optim.name, cfg.max_steps, cfg.schedule_minutes, cfg.batch_size) == ("muon", 1550, None, 32)
