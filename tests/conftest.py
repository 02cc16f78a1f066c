"""Shared fixtures: the golden reference data, the committed test fixtures, the repository root.

The golden data (the reference framework's own outputs) lives beside the checkout, at
`../shared/golden`; `TINYLM_GOLDEN=PATH` looks elsewhere. Only comparisons with the reference read
it, and they skip when it is absent; with `TINYLM_REQUIRE_GOLDEN=1` (what `.ci/run` sets when the
folder is there) a missing golden folder fails the test instead. Tests of the project's own
behaviour read `tests/fixtures/`, small files made by the project's code
(`tests/fixtures/make_fixtures.py`).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("TINYLM_GOLDEN", REPO.parent / "shared" / "golden"))
REQUIRE_GOLDEN = os.environ.get("TINYLM_REQUIRE_GOLDEN") == "1"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def golden_dir(name: str) -> Path:
    """Path of a golden folder; skips the test when the golden data is absent (fails if required)."""
    path = GOLDEN / name
    if not path.is_dir():
        message = f"golden data not found at {path}"
        if REQUIRE_GOLDEN:
            pytest.fail(message + " (TINYLM_REQUIRE_GOLDEN=1)")
        pytest.skip(message)
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


def fixture_examples(family: str, kind: str) -> list[str]:
    """The committed `tests/fixtures/<family>_<kind>.txt` (kind: programs or traces), split on blank lines."""
    return (FIXTURES / f"{family}_{kind}.txt").read_text().split("\n\n")[:-1]


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


def build_small(folder: Path, committed: str, splits: dict, ood_count: int, shard_size: int) -> Path:
    """The committed dataset spec `committed` (e.g. datasets/nightly-mini) built into `folder` at small counts."""
    import yaml

    from tinylm.data.datasets import build

    folder.mkdir(parents=True)
    spec = yaml.safe_load((REPO / committed / "dataset.yaml").read_text())
    spec["splits"], spec["shard_size"] = splits, shard_size   # an OOD stream draws whole shards
    for suite in spec["ood"]:
        suite["count"] = ood_count
    (folder / "dataset.yaml").write_text(yaml.safe_dump(spec))
    build(folder, workers=1)
    return folder


def property_ranges(programs: list[str], properties: dict) -> dict[str, set]:
    """Every value each property (name -> program -> list of values) takes over `programs`."""
    return {name: {v for p in programs for v in measure(p)} for name, measure in properties.items()}


def _numeric(values: set) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def inside_range(values: set, reference: set) -> bool:
    """Numbers within reference's min..max; anything else (names, flags) a subset of reference."""
    if not _numeric(values | reference):
        return values <= reference
    return not values or (bool(reference) and min(reference) <= min(values) and max(values) <= max(reference))


def beyond_range(values: set, reference: set) -> bool:
    """Numbers all above reference's max; anything else disjoint from reference."""
    if not _numeric(values | reference):
        return bool(values) and not values & reference
    return bool(values) and min(values) > max(reference)


def assert_one_shift(folder: Path, suite: str, properties: dict, shifted: str) -> tuple[list[str], list[str]]:
    """Suite `suite` of a built dataset moves property `shifted` past the training split's range and
    keeps every other property inside it; returns (the suite's programs, the training programs)."""
    train = built_programs(folder)["train"]
    suite_programs = [p.split("\n#STEP\n")[0] for p in (folder / f"ood_{suite}.txt").read_text().split("\n\n")
                      if p.strip()]
    assert len(suite_programs) >= 100
    trained, measured = property_ranges(train, properties), property_ranges(suite_programs, properties)
    assert beyond_range(measured[shifted], trained[shifted]), (shifted, measured[shifted], trained[shifted])
    for name, values in measured.items():
        if name != shifted:
            assert inside_range(values, trained[name]), (suite, name, sorted(values), sorted(trained[name]))
    return suite_programs, train


def built_programs(folder: Path) -> dict[str, list[str]]:
    """The programs (text before the first step) of every split file of a built dataset, read back
    from the files: train.bin and val.bin decoded with the manifest's tokenizer."""
    import numpy as np

    from tinylm.lang.format import split_examples
    from tinylm.lang.trace import iter_examples
    from tinylm.tokens.load import tokenizer_from_dict

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


def model_that_writes(tokenizer, text: str, block_size: int | None = None):
    """A GPT that writes `text` (in the tokenizer's tokens), then the terminator, whatever it reads:
    it looks at positions only. Its position embeddings are one-hot, its blocks add nothing (all
    zero), and the output layer maps position t to token t + 1 of the text, the terminator past its
    end. block_size defaults to the text's length plus two."""
    import torch

    from tinylm.model.gpt import GPT, GPTConfig

    ids = tokenizer.encode(text).tolist() + [tokenizer.eos_id]
    T = block_size or len(ids) + 1
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=T, n_layer=1, n_head=1, n_embd=T))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.wpe.weight.copy_(torch.eye(T))
        model.ln_f.weight.fill_(1.0)
        for t in range(T):
            model.lm_head.weight[ids[t + 1] if t + 1 < len(ids) else tokenizer.eos_id, t] = 10.0
    return model.eval()


def run_c_source():
    """llama2.c's run.c: $LLAMA2C_RUN_C, else ../shared/clients/llama2c/run.c beside the checkout."""
    env = os.environ.get("LLAMA2C_RUN_C")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "clients" / "llama2c" / "run.c"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def run_c(tmp_path_factory):
    """llama2.c's run.c compiled (skips where the source or a C compiler is absent)."""
    source, cc = run_c_source(), shutil.which("cc") or shutil.which("gcc")
    if source is None or cc is None:
        pytest.skip("llama2.c's run.c or a C compiler is absent")
    binary = tmp_path_factory.mktemp("llama2c") / "run"
    subprocess.run([cc, "-O2", "-o", str(binary), str(source), "-lm"], check=True, capture_output=True)
    return binary


TINY_TRACE = ("# code\na = 1\nb = a\n#STEP\n"
              "# code\n@a = 1$\nb = a\n#STEP\n"
              "# code\na = 1\n@b = a$a?1\n#STEP\n"
              "# code\na = 1\nb = a\n@^$a?1;b?1")
"""A two-line program and its three-step trace (m2 marks, no printed output): for tests that need
an example, not a grammar."""

