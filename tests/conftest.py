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


def built_programs(folder: Path) -> dict[str, list[str]]:
    """The programs (text before the first step) of every split file of a built dataset, read back
    from the files: train.bin and val.bin decoded with the manifest's tokenizer."""
    import numpy as np

    from tinylm.lang.trace import iter_examples
    from tinylm.tokenizer import split_examples, tokenizer_from_dict

    manifest = json.loads((folder / "manifest.json").read_text())
    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    programs = {}
    for split, info in manifest["splits"].items():
        path = folder / info["file"]
        if path.suffix == ".bin":
            ids = np.fromfile(path, dtype=manifest["dtype"])
            examples = split_examples(tokenizer.decode(ids))
            assert np.array_equal(tokenizer.encode_examples(examples), ids)  # decoding lost nothing
        else:
            examples = list(iter_examples(path))
        assert len(examples) == info["examples"] == info["requested"]
        programs[split] = [e[:e.index("\n#STEP\n")] for e in examples]
    return programs
