"""Shared fixtures: the golden reference data beside the checkout, and the repository root."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / "shared" / "golden"


def golden_dir(name: str) -> Path:
    """Path of a golden folder; skips the test cleanly when the golden data is absent."""
    path = GOLDEN / name
    if not path.is_dir():
        pytest.skip(f"golden data not found at {path}")
    return path


def read_gz_text(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        return f.read()


def golden_examples(name: str, file: str) -> list[str]:
    """The examples of a golden folder's programs.txt.gz or traces.txt.gz, split on blank lines."""
    text = read_gz_text(golden_dir(name) / file)
    return text.split("\n\n")[:-1]


def golden_vocab(name: str) -> list[str]:
    return json.loads((golden_dir(name) / "vocab.json").read_text())


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: tiny tensors gain nothing from more, least of all on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
