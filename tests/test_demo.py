"""The demo's one-shot command runs every stage end to end (smoke config) and prints the scores.

It runs in a copy of the demo project and the demo dataset spec, so the checkout stays clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_run_all_smoke_goes_from_yaml_to_scores(tmp_path):
    (tmp_path / "datasets" / "demo").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "datasets" / "demo" / "dataset.yaml", tmp_path / "datasets" / "demo")
    shutil.copytree(REPO / "tinypy_code_tracing_demo", tmp_path / "tinypy_code_tracing_demo",
                    ignore=shutil.ignore_patterns("runs", "__pycache__"))

    proc = subprocess.run([sys.executable, str(tmp_path / "tinypy_code_tracing_demo" / "run_all.py"), "smoke"],
                          capture_output=True, text=True, timeout=900)

    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for built in ("train.bin", "val.bin", "test.txt", "manifest.json"):
        assert (tmp_path / "datasets" / "demo" / built).is_file()
    run = tmp_path / "tinypy_code_tracing_demo" / "2_model_training" / "runs" / "smoke"
    assert (run / "best.pt").is_file() and (run / "metrics.jsonl").is_file()
    assert "hard match" in proc.stdout and "demo finished" in proc.stdout

    exact = subprocess.run([sys.executable, str(tmp_path / "tinypy_code_tracing_demo" / "3_inference" / "eval.py"),
                            "--limit", "4", "configs/smoke.yaml", "--window", "reference"],
                           capture_output=True, text=True, timeout=300)
    assert exact.returncode == 0, exact.stdout[-2000:] + exact.stderr[-2000:]
    assert "4 test examples (reference window)" in exact.stdout

    sweep = subprocess.run([sys.executable, str(tmp_path / "tinypy_code_tracing_demo" / "3_inference" / "sweep.py"),
                            "configs/smoke.yaml", "--limit", "4"], capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    out = tmp_path / "tinypy_code_tracing_demo" / "3_inference" / "runs" / "smoke" / "sweep"
    assert (out / "hard_match.png").stat().st_size > 1000
    assert "demo hard match >= 99%" in (out / "sweep.md").read_text()


def test_run_all_rejects_an_unknown_config(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tinypy_code_tracing_demo" / "run_all.py"), "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "error: run_all.py: no config 'nope' (choose from cpu, gpu, smoke) (see run_all.py --help)\n"


@pytest.mark.parametrize("config", sorted((REPO / "tinypy_code_tracing_demo" / "2_model_training" / "configs")
                                          .glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_demo_config_loads_and_builds_its_model(config):
    from tinylm.config import load_config
    from tinylm.model import GPT
    from tinylm.train import TrainConfig, resolve_model_config

    cfg = load_config(TrainConfig, config, [])
    cfg.validate()
    model = GPT(resolve_model_config(cfg, vocab_size=77, where=str(config)))
    if config.stem == "cpu":  # the model the demo README's numbers were measured with
        assert (model.config.pos_encoding, model.config.mlp_ratio, model.num_params()) == ("alibi", 2, 808_653)
