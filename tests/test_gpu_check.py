"""benchmarks/gpu_check.py runs unattended: its dry run (CPU, toy sizes) passes every check and writes
its JSON and table, so the script is ready for the day a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_check_dry_run_passes_and_writes_its_report(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and set(report["results"]) >= {
        "train bf16", "train fp16 + scaler", "compile equals eager", "checkpoint and decoding", "torchrun 1 process"}
    assert all("error" not in r for r in report["results"].values())
    assert report["results"]["torchrun 1 process"]["ok"]
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check on cpu (dry run)")
