"""benchmarks/speedrun.py: recipes trained for fixed steps, interleaved by seed, scored at every kept
checkpoint; minutes to a threshold are the training steps' own time, the first checkpoint to reach it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import speedrun  # noqa: E402


def test_the_first_checkpoint_at_a_threshold_gives_its_minutes_and_tokens():
    rows = {"a": {1: [{"step": 10, "tokens": 100, "minutes": 1.0, "n": 500, "hard_pct": 90.0},
                      {"step": 20, "tokens": 200, "minutes": 2.0, "n": 500, "hard_pct": 96.0},
                      {"step": 30, "tokens": 300, "minutes": 3.0, "n": 500, "hard_pct": 99.4}],
                  2: [{"step": 10, "tokens": 100, "minutes": 1.5, "n": 500, "hard_pct": 95.0},
                      {"step": 20, "tokens": 200, "minutes": 2.5, "n": 500, "hard_pct": 97.0}]}}
    lines = speedrun.summary_table(rows).splitlines()
    assert lines[2] == "| a | 1 | 2.0 | 200 | 3.0 | 300 | 99.4 | 500 |"
    assert lines[3] == "| a | 2 | 1.5 | 100 | not reached | - | 97.0 | 500 |"
    assert lines[4] == "| a | median (range) | **1.8** (1.5–2.0, 2 of 2) |  | **3.0** (3.0–3.0, 1 of 2) |  |  |  |"


@pytest.mark.slow
def test_recipes_train_interleaved_and_every_checkpoint_is_scored(tmp_path):
    data = tmp_path / "demo"
    data.mkdir()
    (data / "dataset.yaml").write_text(yaml.safe_dump({**yaml.safe_load((REPO / "datasets/demo/dataset.yaml").read_text()),
                                                       "splits": {"train": 1000, "val": 100, "test": 10}}))
    subprocess.run([sys.executable, "-m", "tinylm", "data", "build", str(data), "--workers", "1"], check=True,
                   capture_output=True)
    out = tmp_path / "out"
    argv = ["--recipe", "base=", "--recipe", "narrow=model.n_embd=32", "--seeds", "2", "--steps", "8", "--every", "4",
            "--programs", "3", "--dataset", str(data), "--out", str(out), "--extra", "model.n_layer=1",
            "model.n_embd=64", "batch_size=4", "threads=1"]
    assert speedrun.main(argv) == 0
    result = json.loads((out / "speedrun.json").read_text())
    for recipe in ("base", "narrow"):
        for seed in ("1", "2"):
            rows = result["results"][recipe][seed]
            assert [r["step"] for r in rows] == [4, 8] and all(r["n"] == 3 for r in rows)
            assert 0 < rows[0]["minutes"] < rows[1]["minutes"]
            cfg = yaml.safe_load((out / recipe / f"seed{seed}" / "config.yaml").read_text())
            assert cfg["seed"] == int(seed) and cfg["model"]["n_embd"] == (32 if recipe == "narrow" else 64)
    assert "median (range)" in (out / "speedrun.md").read_text()
