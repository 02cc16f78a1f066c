"""Dataset builds: same bytes with any worker count and after a kill, mixtures of generators,
decontamination (proven on the built files), the manifest, the committed specs, the staged route,
and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import built_programs

from tinylm.base.errors import ConfigError, DataError
from tinylm.cli import main
from tinylm.data.datasets import build, program_keys, streams_of
from tinylm.data.mixture import stream_programs, stream_seed
from tinylm.data.shards import InlineExecutor, is_text_spec, ordered_map
from tinylm.data.spec import load_dataset_spec, load_spec
from tinylm.data.splits import KeySet
from tinylm.data.stages import cli
from tinylm.lang.format import split_examples
from tinylm.lang.generate import generate_programs
from tinylm.lang.trace import iter_examples
from tinylm.tokens.load import tokenizer_from_dict

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ["train.bin", "val.bin", "test.txt", "ood_loops.txt", "keys_train.npy", "keys_heldout.npy"]
SMALL = {"names": ["a", "b"], "max_digit": 3}  # a few thousand distinct programs: duplicates happen


def tiny_spec(**changes) -> dict:
    spec = {
        "generator": {"preset": "demo", "overrides": {"demo": SMALL}},
        "trace_format": "demo",
        "block_size": 128,
        "tokenizer": {"kind": "keyword", "vocab": "demo"},
        "splits": {"train": 300, "val": 30, "test": 40},
        "ood": [{"name": "loops", "count": 25, "generator": {
            "preset": "demo", "overrides": {"demo": {"while_probability": 1.0}}}}],
        "seed": 3,
        "shard_size": 64,
    }
    spec.update(changes)
    return spec


@pytest.fixture
def root(tmp_path) -> Path:
    """A repository-like root, so that `decontaminate` paths resolve against it."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "datasets").mkdir()
    return tmp_path


def make_dataset(root: Path, name: str, spec: dict) -> Path:
    folder = root / "datasets" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(yaml.safe_dump(spec))
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS if (folder / name).exists()}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinylm.cli", "data", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


LEARNED = {"keyword": ({"kind": "keyword", "vocab": "demo"}, 128),
           "char": ({"kind": "char", "sample": 200}, 1024),  # block_size counts characters here
           "sentencepiece": ({"kind": "sentencepiece", "vocab_size": 120, "sample": 300}, 256)}


@pytest.mark.parametrize("kind", list(LEARNED))
def test_same_bytes_with_one_and_two_workers(root, kind):
    tokenizer, block_size = LEARNED[kind]
    one = make_dataset(root, "one", tiny_spec(tokenizer=tokenizer, block_size=block_size))
    two = make_dataset(root, "two", tiny_spec(tokenizer=tokenizer, block_size=block_size))
    build(one, workers=1)
    build(two, workers=2)
    assert outputs(one) == outputs(two)
    assert len(outputs(one)) == len(OUTPUTS)
    assert not (one / "shards").exists()


def test_resume_reuses_finished_shards_and_gives_the_same_bytes(root):
    folder = make_dataset(root, "d", tiny_spec())
    build(folder, workers=1, keep_shards=True)
    reference = outputs(folder)
    shards = sorted((folder / "shards").rglob("*.npz"))
    kept, lost = shards[::2], shards[1::2]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    for path in lost + [folder / name for name in OUTPUTS] + [folder / "manifest.json"]:
        path.unlink()
    time.sleep(0.01)
    build(folder, workers=2, keep_shards=True)
    assert outputs(folder) == reference
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps  # finished shards were not redone


def test_a_killed_build_resumes_to_the_same_bytes(root):
    spec = tiny_spec(splits={"train": 3000, "val": 30, "test": 40}, shard_size=100)
    reference = make_dataset(root, "reference", spec)
    build(reference, workers=1)
    folder = make_dataset(root, "killed", spec)
    proc = subprocess.Popen([sys.executable, "-m", "tinylm.cli", "data", "build", str(folder), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while len(list(folder.glob("shards/*/*.npz"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers
    proc.wait()
    assert not (folder / "manifest.json").exists(), "the build finished before it could be killed"
    assert not (folder / "train.bin").exists()
    assert run_cli("build", str(folder), "--workers", "2").returncode == 0
    assert outputs(folder) == outputs(reference)
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (folder, reference)]
    for key in ("splits", "tokenizer", "vocab_size", "dtype"):
        assert manifests[0][key] == manifests[1][key], key


def test_no_program_twice_and_no_held_out_program_in_another_datasets_train(root):
    first = make_dataset(root, "first", tiny_spec(ood=[]))
    build(first, workers=1)
    second = make_dataset(root, "second", tiny_spec(ood=[], seed=4, decontaminate=["datasets/first"]))
    manifest = build(second, workers=2)
    assert manifest["stages"]["main"]["contaminated"] > 0
    assert manifest["stages"]["main"]["duplicates"] > 0

    def keys(folder, role):
        return set(np.load(folder / f"keys_{role}.npy").tolist())

    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    train_text = tokenizer.decode(np.fromfile(second / "train.bin", dtype=manifest["dtype"]))
    train_keys = program_keys(split_examples(train_text)).tolist()
    assert len(set(train_keys)) == len(train_keys) == 300 and set(train_keys) == keys(second, "train")
    test_keys = program_keys(list(iter_examples(second / "test.txt"))).tolist()
    assert len(set(test_keys)) == len(test_keys) == 40
    assert not set(test_keys) & keys(second, "train")
    assert set(test_keys) <= keys(second, "heldout")
    assert len(keys(second, "heldout")) == 70
    assert not keys(second, "heldout") & keys(first, "train")
    assert not keys(second, "train") & keys(first, "heldout")


def test_built_files_share_no_program_between_held_out_and_training_splits(root):
    one_name = {"names": ["a"], "max_digit": 3}  # 2,048 programs, half of them with a loop: overlaps are common
    generator = {"preset": "demo", "overrides": {"demo": one_name}}
    loops = [{"name": "loops", "count": 100, "generator": {
        "preset": "demo", "overrides": {"demo": {**one_name, "while_probability": 1.0}}}}]
    first = make_dataset(root, "first", tiny_spec(generator=generator, ood=loops))
    build(first, workers=1)
    second = make_dataset(root, "second", tiny_spec(generator=generator, ood=loops, seed=4,
                                                    decontaminate=["datasets/first"]))
    manifest = build(second, workers=2)
    assert manifest["stages"]["main"]["contaminated"] > 0 and manifest["stages"]["ood_loops"]["contaminated"] > 0
    datasets = {name: built_programs(root / "datasets" / name) for name in ("first", "second")}
    assert set(datasets["second"]) == {"test", "val", "train", "ood_loops"}
    for splits in datasets.values():
        every = [p for programs in splits.values() for p in programs]
        assert len(set(every)) == len(every)  # no program twice inside a dataset
    train = {p for splits in datasets.values() for p in splits["train"]}
    held_out = {p for splits in datasets.values() for name, ps in splits.items() if name != "train" for p in ps}
    assert not held_out & train  # no test, val or OOD program of either dataset in either train split


MIXTURE = {"mix": [{"preset": "demo", "weight": 1, "overrides": {"demo": {"names": ["a", "b"]}}},
                   {"preset": "demo", "weight": 1, "overrides": {"demo": {"names": ["c", "d"]}}},
                   {"preset": "demo", "weight": 2, "overrides": {"demo": {"names": ["x", "y"], "max_digit": 3}}}]}


def component(program: str) -> int:
    """Which MIXTURE component wrote a program: each has its own names."""
    names = set(re.findall(r"\b[a-z]\b", program))
    return next(k for k, own in enumerate([{"a", "b"}, {"c", "d"}, {"x", "y"}]) if names <= own)


def mixture(root: Path, generator: dict):
    return streams_of(load_spec(make_dataset(root, "mix", tiny_spec(generator=generator, ood=[]))))[0].generator


def test_a_mixture_draws_each_component_in_proportion_from_its_own_seeded_stream(root):
    mix = mixture(root, MIXTURE)
    programs, drawn = stream_programs(mix, 9, 0, 2000)
    counts = np.bincount([component(p) for p in programs], minlength=3)
    assert counts.tolist() == drawn and sum(drawn) == 2000
    assert np.abs(counts / 2000 - [0.25, 0.25, 0.5]).max() < 0.03
    for k, spec in enumerate(mix.generators):
        assert [p for p in programs if component(p) == k] == generate_programs(spec, stream_seed(9, f"mix[{k}]"), 0, counts[k])
    cuts = [0, 1, 255, 300, 301, 777, 2000]
    assert [p for a, b in zip(cuts, cuts[1:]) for p in stream_programs(mix, 9, a, b - a)[0]] == programs
    assert stream_programs(mix, 9, 1999, 1)[0] == programs[-1:] and stream_programs(mix, 9, 512, 0) == ([], [0, 0, 0])


def test_a_mixture_dataset_is_the_same_with_one_and_two_workers_and_holds_every_component(root):
    ood = [{"name": "loops", "count": 25, "generator": {"mix": [
        {"preset": "demo", "overrides": {"demo": {"names": ["a", "b"], "while_probability": 1.0}}},
        {"preset": "demo", "weight": 3, "overrides": {"demo": {"names": ["x", "y"], "while_probability": 1.0}}}]}}]
    one = make_dataset(root, "one", tiny_spec(generator=MIXTURE, ood=ood))
    two = make_dataset(root, "two", tiny_spec(generator=MIXTURE, ood=ood))
    manifest = build(one, workers=1)
    build(two, workers=2)
    assert outputs(one) == outputs(two) and len(outputs(one)) == len(OUTPUTS)
    for split, programs in built_programs(one).items():
        assert set(map(component, programs)) == ({0, 2} if split == "ood_loops" else {0, 1, 2}), split
    main_mix = manifest["streams"]["main"]["mix"]
    assert [(c["preset"], c["weight"]) for c in main_mix] == [("demo", 1.0), ("demo", 1.0), ("demo", 2.0)]
    assert main_mix[2]["generator"]["demo"]["names"] == ["x", "y"]
    assert main_mix[0]["seed"] == stream_seed(3, "mix[0]")
    assert sum(c["drawn"] for c in main_mix) == manifest["stages"]["main"]["generated"]
    ood_mix = manifest["streams"]["ood_loops"]["mix"]
    assert sum(c["drawn"] for c in ood_mix) == manifest["stages"]["ood_loops"]["generated"] == 64  # one shard
    assert ood_mix[0]["drawn"] < ood_mix[1]["drawn"]


BAD_MIXTURES = {
    "empty": ({"mix": []}, "'generator.mix' must list at least one generator"),
    "zero weight": ({"mix": [{"preset": "demo"}, {"preset": "demo", "weight": 0}]}, "'generator.mix[1].weight' must be a number > 0"),
    "negative weight": ({"mix": [{"preset": "demo", "weight": -2}]}, "'generator.mix[0].weight' must be a number > 0"),
    "unknown key": ({"mix": [{"preset": "demo", "wieght": 1}]}, "unknown key 'generator.mix[0].wieght'"),
    "unknown preset": ({"mix": [{"preset": "demo"}, {"preset": "nope"}]}, "'generator.mix[1]': unknown generator preset 'nope'"),
    "bad knob": ({"mix": [{"preset": "demo", "overrides": {"demo": {"max_digit": 0}}}]}, "'generator.mix[0]': .*demo.max_digit"),
    "two headers": ({"mix": [{"preset": "demo"}, {"preset": "alpha"}]}, "'generator.mix[1].preset': its header line '' differs"),
    "preset and mix": ({"preset": "nightly", "mix": [{"preset": "demo"}]}, "'generator': give either 'preset'"),
}


@pytest.mark.parametrize("case", list(BAD_MIXTURES))
def test_a_bad_mixture_is_a_config_error_naming_the_key(root, case):
    generator, message = BAD_MIXTURES[case]
    with pytest.raises(ConfigError, match=re.escape(message).replace(r"\.\*", ".*")):
        mixture(root, generator)
    ood = [{"name": "o", "generator": generator}]
    with pytest.raises(ConfigError, match=re.escape(message.replace("'generator", "'ood[0].generator")).replace(r"\.\*", ".*")):
        load_spec(make_dataset(root, "mix", tiny_spec(ood=ood)))


def test_manifest_records_counts_tokens_and_provenance(root):
    folder = make_dataset(root, "d", tiny_spec())
    build(folder, workers=1)
    manifest = json.loads((folder / "manifest.json").read_text())
    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    assert manifest["vocab_size"] == tokenizer.vocab_size == 77
    assert manifest["dtype"] == "uint8" and manifest["block_size"] == 128 and manifest["seed"] == 3
    assert manifest["config"]["splits"] == {"train": 300, "val": 30, "test": 40}
    assert manifest["meta"]["git_revision"]
    for split in ("train", "val"):
        ids = np.fromfile(folder / f"{split}.bin", dtype=np.uint8)
        info = manifest["splits"][split]
        assert info["tokens"] == len(ids) and info["examples"] == info["requested"]
        assert int((ids == tokenizer.eos_id).sum()) == info["examples"]
    assert len(list(iter_examples(folder / "test.txt"))) == manifest["splits"]["test"]["examples"] == 40
    assert len(list(iter_examples(folder / "ood_loops.txt"))) == 25
    for stage in manifest["stages"].values():
        dropped = sum(stage["trace_errors"].values()) + stage["filtered_out"] + stage["duplicates"]
        assert stage["generated"] == dropped + stage["contaminated"] + stage["kept"] + stage["surplus"]
    assert manifest["stages"]["main"]["kept"] == 370


def test_staged_route_gives_the_build_bytes(root):
    folder = make_dataset(root, "d", tiny_spec(ood=[]))
    build(folder, workers=1)
    staged = root / "staged"
    staged_route(folder, staged)
    assert outputs(staged) == outputs(folder)


def staged_route(folder: Path, staged: Path) -> None:
    """generate -> trace -> filter -> prepare with the settings of `folder`, into `staged`."""
    steps = [["generate", str(folder), str(staged / "programs.txt")],
             ["trace", str(staged / "programs.txt"), str(staged / "traces.txt"), "--spec", str(folder)],
             ["filter", str(staged / "traces.txt"), str(staged / "kept.txt"), "--spec", str(folder)],
             ["prepare", str(staged / "kept.txt"), str(staged), "--spec", str(folder), "--workers", "2"]]
    for argv in steps:
        assert cli(argv) == 0


def test_staged_route_decontaminates_as_build_does(root):
    build(make_dataset(root, "first", tiny_spec(ood=[])))
    folder = make_dataset(root, "d", tiny_spec(ood=[], seed=4, decontaminate=["datasets/first"]))
    built = build(folder, workers=1)
    staged = root / "staged"
    staged_route(folder, staged)
    assert outputs(staged) == outputs(folder)
    manifest = json.loads((staged / "manifest.json").read_text())
    assert manifest["stages"]["main"]["contaminated"] == built["stages"]["main"]["contaminated"] > 0
    assert manifest["decontaminated_against"] == built["decontaminated_against"] != []


def test_a_dataset_that_decontaminates_against_itself_is_an_error_on_both_routes(root):
    folder = make_dataset(root, "d", tiny_spec(ood=[], decontaminate=["datasets/d"]))
    with pytest.raises(ConfigError, match=r"'decontaminate' lists the dataset itself \(datasets/d\)"):
        build(folder, workers=1)
    (root / "traces.txt").write_text("# code\na = 1\n#STEP\n# code\n@a = 1$\n#STEP\n# code\na = 1\n@^$a?1\n\n")
    for spec, out in [(folder, root / "out"), (make_dataset(root, "e", tiny_spec(decontaminate=["out"])), root / "out")]:
        with pytest.raises(ConfigError, match="'decontaminate' lists the dataset itself"):
            cli(["prepare", str(root / "traces.txt"), str(out), "--spec", str(spec)])
        assert not out.exists()


def test_a_length_suite_keeps_only_traces_past_the_training_context(root):
    """The main splits at a context of 128 tokens, a suite at 256 that keeps only traces in which two
    consecutive steps exceed 128: every one of its programs needs distances never trained on."""
    from tinylm.data.filter import BOUNDARY_TOKENS
    from tinylm.tokens.tokenizer import keyword_tokenizer

    spec = tiny_spec(generator={"preset": "nightly-cpu"}, trace_format="m2", tokenizer={"kind": "keyword", "vocab": "m2"},
                     splits={"train": 40, "val": 5, "test": 40},
                     ood=[{"name": "longer", "count": 30, "block_size": 256, "beyond": 128,
                           "generator": {"preset": "nightly-cpu-ood-longer-snippets"}}])
    folder = make_dataset(root, "length", spec)
    build(folder, workers=1)
    tok = keyword_tokenizer("m2")

    def longest_pair(trace: str) -> int:
        ids = np.array(tok.encode(trace + "\n\n"))
        bounds = np.append(np.flatnonzero(ids == tok.token_id(BOUNDARY_TOKENS["m2"])), len(ids))
        return int((bounds[2:] - bounds[:-2]).max(initial=0))

    inside = [longest_pair(t) for t in split_examples((folder / "test.txt").read_text())]
    beyond = [longest_pair(t) for t in split_examples((folder / "ood_longer.txt").read_text())]
    assert len(inside) == 40 and len(beyond) == 30
    assert max(inside) <= 128 and all(128 < n <= 256 for n in beyond)


def test_a_stream_that_cannot_fill_its_splits_is_an_error(root):
    folder = make_dataset(root, "d", tiny_spec(generator={"preset": "demo", "overrides": {
        "demo": {"names": ["a"], "max_digit": 1, "while_probability": 0.0}}}, max_oversample=2.0))
    with pytest.raises(DataError, match=r"only test 32/40, val 0/30, train 0/300 examples .* 736 duplicates"):
        build(folder, workers=1)
    assert not (folder / "test.txt").exists() and not (folder / "manifest.json").exists()


def test_key_set_matches_a_python_set():
    rng = np.random.default_rng(0)
    keys, seen = KeySet(), set()
    for _ in range(50):
        batch = rng.integers(0, 5000, size=int(rng.integers(1, 200))).astype(np.uint64)
        probe = rng.integers(0, 5000, size=100).astype(np.uint64)
        assert keys.contains(probe).tolist() == [int(k) in seen for k in probe]
        keys.add(batch)
        seen.update(batch.tolist())
    assert keys.sorted().tolist() == sorted(seen) and len(keys.levels) < 12


def test_ordered_map_with_wanted_delays_jobs_but_keeps_every_result_in_order():
    submitted = []

    def job(k: int) -> int:
        submitted.append(k)
        return k * k

    taken = []
    results = ordered_map(InlineExecutor(), job, range(10), in_flight=4, wanted=lambda n: len(taken) + n < 3)
    for value in results:
        taken.append(value)
        if len(taken) == 3:
            break
    results.close()
    assert taken == [0, 1, 4] and submitted == [0, 1, 2]  # nothing computed ahead once enough was taken
    assert list(ordered_map(InlineExecutor(), job, range(6), in_flight=2, wanted=lambda n: False)) == \
        [k * k for k in range(6)]


@pytest.mark.parametrize("folder", sorted((REPO / "datasets").glob("*/dataset.yaml")), ids=lambda p: p.parent.name)
def test_every_committed_dataset_spec_loads(folder):
    if is_text_spec(folder):  # a text corpus: tests/test_text_corpus.py
        assert load_dataset_spec(folder.parent).splits.val > 0
        return
    spec = load_spec(folder.parent)
    streams = streams_of(spec)
    assert streams[0].splits and all(count > 0 for _, count in streams[0].splits)
    for entry in spec.decontaminate:
        assert (REPO / entry / "dataset.yaml").is_file()


BAD_SPECS = {
    "malformed YAML": ("splits: {train: 3\n", "malformed YAML"),
    "unknown key": (yaml.safe_dump(tiny_spec(shards=3)), "unknown key 'shards'"),
    "unknown preset": (yaml.safe_dump(tiny_spec(generator={"preset": "nope"})), "unknown generator preset 'nope'"),
    "out-of-range knob": (yaml.safe_dump(tiny_spec(generator={"preset": "demo", "overrides": {
        "demo": {"while_probability": 2.0}}})), "while_probability"),
    "unknown character": (yaml.safe_dump(tiny_spec(tokenizer={"kind": "keyword", "vocab": "alpha"})), "'#'"),
    "a suite beyond its context": (yaml.safe_dump(tiny_spec(ood=[{"name": "long", "count": 5, "beyond": 128}])),
                                   "'ood[0]': block_size 128 and beyond 128"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_one_error_line_and_no_output(root, case):
    text, message = BAD_SPECS[case]
    folder = root / "datasets" / "bad"
    folder.mkdir()
    (folder / "dataset.yaml").write_text(text)
    proc = run_cli("build", str(folder), "--workers", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert sorted(p.name for p in folder.iterdir() if p.name != "shards") == ["dataset.yaml"]


def test_missing_inputs_are_one_error_line(root):
    for args, message in [(["build", str(root / "datasets" / "absent")], "no such dataset folder"),
                          (["trace", str(root / "absent.txt"), str(root / "out.txt")], "no such file"),
                          (["build", str(make_dataset(root, "d", tiny_spec(decontaminate=["datasets/x"])))],
                           "build that dataset first")]:
        proc = run_cli(*args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (root / "out.txt").exists()


def test_zero_workers_is_one_error_line(root, capsys):
    for command in (["build", str(make_dataset(root, "d", tiny_spec()))], ["generate", "demo", str(root / "p.txt")],
                    ["trace", str(root / "p.txt"), str(root / "t.txt")]):
        assert main(["data", *command, "--workers", "0"]) == 2
        err = capsys.readouterr().err
        assert err == "error: --workers must be >= 1, got 0\n", err
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["dataset.yaml", "pyproject.toml"]


def test_prepare_rejects_an_unknown_character(root):
    source = root / "traces.txt"
    source.write_text("# code\na = 1\n#STEP\n@a = 1$\u20ac\n\n")
    proc = run_cli("prepare", str(source), str(root / "out"))
    assert proc.returncode == 2 and "\u20ac" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (root / "out" / "train.bin").exists()


def test_the_shard_key_covers_every_module_a_shard_is_made_with(monkeypatch):
    """An edit to the text-corpus or story code must not reuse text shards made before it."""
    import tinylm
    from tinylm.data.shards import SHARD_SOURCES, code_fingerprint

    root = Path(tinylm.__file__).parent
    covered = {p.relative_to(root).as_posix() for pattern in SHARD_SOURCES for p in root.glob(pattern)}
    assert {"data/corpus.py", "data/stories.py", "data/datasets.py", "data/shards.py", "data/filter.py",
            "tokens/tokenizer.py", "lang/trace.py", "lang/generate.py"} <= covered
    before = code_fingerprint()
    original = Path.read_bytes

    def edited(path):   # corpus.py as if one line changed
        data = original(path)
        return data + b"\n# edited\n" if path.name == "corpus.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert code_fingerprint() != before
