"""Text corpora (`kind: text` datasets): the TinyStories, txt and JSONL formats, deterministic and
resumable builds, uint16 ids read as uint16, pinned local sources, and a Llama-style model that
trains many steps on generated stories, logs loss and perplexity, and generates from a prompt.

`fixtures/tinystories_v2_sample.txt` is written by hand in the layout of TinyStoriesV2-GPT4-train.txt
(stories separated by `<|endoftext|>` lines, blank lines inside a story, curly quotes, a stray
blank line after a separator)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import FIXTURES, REPO

from tinylm.base.config import from_dict
from tinylm.base.errors import ConfigError, DataError
from tinylm.cli import main
from tinylm.data import corpus
from tinylm.data.batches import open_dataset
from tinylm.data.datasets import build
from tinylm.data.spec import load_dataset_spec
from tinylm.data.stories import story
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.presets import model_preset
from tinylm.tokens.load import tokenizer_from_dict
from tinylm.train.config import TrainConfig
from tinylm.train.loop import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = FIXTURES / "tinystories_v2_sample.txt"


def spec_folder(tmp_path, name="ds", **spec) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "dataset.yaml").write_text(yaml.safe_dump({"kind": "text", **spec}))
    return str(folder)


def stories_spec(tmp_path, name="ds", stories=300, **kw) -> str:
    return spec_folder(tmp_path, name, source={"generate": {"stories": stories, "seed": 3}, "format": "tinystories"},
                       splits={"val": 20}, shard_size=50, **kw)


def test_tinystories_format_splits_at_endoftext_lines_only():
    docs = list(corpus.iter_documents([SAMPLE], "tinystories"))
    assert len(docs) == 5
    assert docs[0].startswith("Once upon a time, there was a little girl named Lily.")
    assert "\n\nLily's mom said, “Be careful, Lily!”" in docs[0]  # a blank line inside a story stays
    assert docs[1] == "Tom had 3 toy cars. He gave 1 car to his friend Sam. Now Tom had 2 cars, and Sam had 1. " \
                      "They were both happy."
    assert "Café" in docs[2] and "100%" in docs[3] and docs[4].endswith("pink and shiny.")


def test_txt_and_jsonl_formats(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("First doc,\nline two.\n\n\nSecond doc 2.\n\n")
    assert list(corpus.iter_documents([txt], "txt")) == ["First doc,\nline two.", "Second doc 2."]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(json.dumps({"story": "One\nTwo"}) + "\n\n" + json.dumps({"story": " Three "}) + "\n")
    assert list(corpus.iter_documents([jsonl], "jsonl", "story")) == ["One\nTwo", "Three"]
    jsonl.write_text(json.dumps({"story": "One"}) + "\n" + json.dumps({"text": "Two"}) + "\n")
    with pytest.raises(DataError, match="a.jsonl, line 2: not a JSON object with a 'story' field"):
        list(corpus.iter_documents([jsonl], "jsonl", "story"))


def test_a_tinystories_file_builds_with_a_fixed_validation_split(tmp_path):
    folder = spec_folder(tmp_path, source={"path": str(SAMPLE), "format": "tinystories"},
                         tokenizer={"kind": "char"}, splits={"val": 2}, shard_size=2)
    manifest = build(folder, workers=1)
    assert (manifest["splits"]["val"]["examples"], manifest["splits"]["train"]["examples"]) == (2, 3)
    tok = tokenizer_from_dict(manifest["tokenizer"])
    docs = list(corpus.iter_documents([SAMPLE], "tinystories"))
    ds = open_dataset(folder)
    assert np.array_equal(ds.val.tokens, tok.encode_examples(docs[:2]))
    assert np.array_equal(ds.train.tokens, tok.encode_examples(docs[2:]))
    assert tok.decode(ds.train.tokens) == "".join(docs[2:])
    assert "“" not in tok.tokens and "<unk>" in tok.decode(ds.val.tokens)  # learned from training documents only
    assert manifest["source"]["sha256"] == corpus.file_sha256([SAMPLE])


def test_build_is_deterministic_resumable_and_the_same_with_any_workers(tmp_path, monkeypatch):
    a, b = stories_spec(tmp_path, "a", tokenizer={"kind": "word"}), stories_spec(tmp_path, "b", tokenizer={"kind": "word"})
    build(a, workers=1, keep_shards=True)
    build(b, workers=2)
    files = ("corpus.txt", "val.bin", "train.bin")
    first = {f: (tmp_path / "a" / f).read_bytes() for f in files}
    assert first == {f: (tmp_path / "b" / f).read_bytes() for f in files}
    assert (tmp_path / "a" / "corpus.txt").read_text().split("\n<|endoftext|>\n")[7] == story(3, 7)
    # a killed build: outputs missing, one shard lost; the others are reused, the bytes the same
    for f in ("val.bin", "train.bin", "manifest.json"):
        (tmp_path / "a" / f).unlink()
    [shards] = (tmp_path / "a" / "shards").glob("text.*")
    (shards / "000002.npz").unlink()
    encoded = []
    real = corpus.encode_shard
    monkeypatch.setattr(corpus, "encode_shard", lambda job: encoded.append(job.documents is not None) or real(job))
    build(a, workers=1)
    assert sum(encoded) == 1 and len(encoded) == 6
    assert first == {f: (tmp_path / "a" / f).read_bytes() for f in files}
    assert not (tmp_path / "a" / "shards").exists()


def test_uint16_ids_are_read_as_uint16(tmp_path):
    folder = stories_spec(tmp_path, tokenizer={"kind": "sentencepiece", "vocab_size": 300})
    manifest = build(folder, workers=1)
    assert manifest["vocab_size"] > 256 and manifest["dtype"] == "uint16"
    tok = tokenizer_from_dict(manifest["tokenizer"])
    docs = list(corpus.iter_documents([tmp_path / "ds" / "corpus.txt"], "tinystories"))
    ds = open_dataset(folder)
    assert ds.train.tokens.dtype == np.uint16 and int(ds.train.tokens.max()) > 255
    assert np.array_equal(ds.train.tokens, tok.encode_examples(docs[20:]))
    as_bytes = np.fromfile(tmp_path / "ds" / "train.bin", dtype=np.uint8)
    assert len(as_bytes) == 2 * len(ds.train.tokens)  # read as bytes, every id would be two wrong ones
    assert (ds.train.starts == np.flatnonzero(ds.train.tokens == tok.bos_id)).all()


def test_sources_are_local_and_pinned(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'source.url'"):
        load_dataset_spec(spec_folder(tmp_path, "url", source={"url": "https://example.org/x.txt"}))
    with pytest.raises(ConfigError, match="either 'path'"):
        load_dataset_spec(spec_folder(tmp_path, "none", source={"format": "txt"}))
    pinned = spec_folder(tmp_path, "pinned", source={"path": str(SAMPLE), "sha256": "0" * 64},
                         tokenizer={"kind": "char"}, splits={"val": 1})
    with pytest.raises(DataError, match="is not the 0000"):
        build(pinned, workers=1)
    assert sorted(p.name for p in (tmp_path / "pinned").iterdir()) == ["dataset.yaml"]
    build(pinned, 1, False, [f"source.sha256={corpus.file_sha256([SAMPLE])}"])
    too_few = spec_folder(tmp_path, "few", source={"path": str(SAMPLE)}, tokenizer={"kind": "char"}, splits={"val": 5})
    with pytest.raises(DataError, match="no training documents after the 5 validation ones"):
        build(too_few, workers=1)
    assert sorted(p.name for p in (tmp_path / "few").iterdir()) == ["dataset.yaml"]
    with pytest.raises(DataError, match="5 documents; the splits need 2 for val and 9 for train"):
        build(too_few, 1, False, ["splits.val=2", "splits.train=9"])
    assert not (tmp_path / "few" / "train.bin").exists()


def test_llama_gqa_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**model_preset("llama-gqa"), "vocab_size": 50})).eval()
    x = torch.randint(0, 50, (2, 40))
    y = x.clone()
    y[:, 20:] = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0][:, :20], model(y)[0][:, :20])
        assert not torch.allclose(model(x)[0][:, 20:], model(y)[0][:, 20:])


def test_llama_gqa_trains_many_steps_on_stories_logs_perplexity_and_generates(tmp_path, capsys):
    folder = stories_spec(tmp_path, stories=400, tokenizer={"kind": "sentencepiece", "vocab_size": 200})
    build(folder, workers=1)
    cfg = from_dict(TrainConfig, dict(
        model={"preset": "llama-gqa", "n_layer": 2, "block_size": 64}, max_steps=40, batch_size=8,
        eval_interval=20, eval_tokens=2048, data={"dataset": folder}, optim={"lr": 3e-3, "warmup_steps": 4},
        out_dir=str(tmp_path / "run"), device="cpu", log={"progress": False, "tensorboard": False}))
    summary = run(cfg)
    assert summary["step"] == 40
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert np.mean([r["loss"] for r in steps[-5:]]) < 0.7 * np.mean([r["loss"] for r in steps[:5]])
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [20, 40]
    for r in evals:
        assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
        assert r["train_perplexity"] == pytest.approx(math.exp(r["train_loss"]))
    assert evals[1]["val_perplexity"] < evals[0]["val_perplexity"]
    header, *rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert header == "step,val_loss,val_perplexity,train_loss,train_perplexity" and len(rows) == 2
    ckpt = str(tmp_path / "run" / "best.pt")
    capsys.readouterr()
    for options in ([], ["--temperature", "0.8", "--top-p", "0.9", "--seed", "1"], ["--top-k", "5", "--seed", "2"],
                    ["--beam", "3"]):
        assert main(["generate", "--checkpoint", ckpt, "--prompt", "Once upon a time", "--max-new-tokens", "30",
                     *options]) == 0
        out = capsys.readouterr().out
        assert out.startswith("Once upon a time") and len(out) > len("Once upon a time") + 10
        assert "<unk>" not in out and "⁇" not in out
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    assert exit_.value.code == 0 and "--allow-unk" in capsys.readouterr().out


def test_the_shipped_stories_spec_loads_and_needs_no_file():
    spec = load_dataset_spec(REPO / "datasets" / "stories-mini")
    assert spec.source.generate is not None and spec.source.path == ""
    assert spec.tokenizer.kind == "sentencepiece" and 100 <= spec.tokenizer.vocab_size <= 4096


def test_tinylm_data_build_prints_the_splits(tmp_path, capsys):
    folder = stories_spec(tmp_path, stories=60, tokenizer={"kind": "char"})
    assert main(["data", "build", folder, "--workers", "1", "splits.train=30"]) == 0
    assert "val 20, train 30" in capsys.readouterr().out
    shutil.rmtree(folder)


def test_the_recipe_smoke_config_runs_every_stage_and_its_model_leaves_for_both_clients(tmp_path, run_c):
    from tinylm.studies.experiment import Project, build_datasets, evaluate_runs, train_runs, write_report

    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "datasets" / "stories-mini").mkdir(parents=True)
    shutil.copy(REPO / "datasets" / "stories-mini" / "dataset.yaml", tmp_path / "datasets" / "stories-mini")
    shutil.copytree(REPO / "tinystories_recipe", tmp_path / "recipe",
                    ignore=shutil.ignore_patterns("runs", "results", "__pycache__"))
    cpu = Project(tmp_path / "recipe", "cpu").train_config("main")
    assert (cpu.max_steps, cpu.schedule_minutes) == (1200, None)   # fixed in steps: the same run on any machine
    p = Project(tmp_path / "recipe", "smoke")
    quiet = lambda *_: None  # noqa: E731
    build_datasets(p, 1, log=quiet)
    train_runs(p, log=quiet)
    evaluate_runs(p, log=quiet)
    report, curves = write_report(p, log=quiet)
    assert curves.name == "curves.png" and curves.read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "step" not in line]
    assert [int(r[0]) for r in rows] == [4, 8]
    for r in rows:
        assert float(r[5]) == pytest.approx(math.exp(float(r[3])), rel=2e-3)  # val perplexity = exp(val loss)
    samples = json.loads((p.work / "eval" / "main" / "samples.json").read_text())["samples"]
    assert [s["decoding"] for s in samples] == ["greedy", "top-p", "beam"]
    assert all(s["text"].startswith("Once upon a time") and f"> {s['text'].splitlines()[0]}" in text for s in samples)
    assert p.dataset_dir("stories-mini") == p.work / "datasets" / "stories-mini"  # smoke sizes: its own build

    # the trained model leaves for transformers and llama2.c, both giving tinylm's greedy text
    transformers = pytest.importorskip("transformers")
    from test_export import run_c_matches_tinylm

    from tinylm.decode.strategies import GenerateConfig, generate
    from tinylm.model.checkpoint import load_model

    model, tok, _ = load_model(p.checkpoint("main"))
    ours = run_c_matches_tinylm(run_c, p.checkpoint("main"), model, tok, tmp_path / "l2c", steps=40)
    assert main(["export", "--checkpoint", str(p.checkpoint("main")), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = hf_tok("Once upon a time", return_tensors="pt")
    with torch.no_grad():
        theirs = hf.generate(**prompt, max_new_tokens=20, do_sample=False, eos_token_id=None)[0].tolist()
    mine = generate(model, [prompt["input_ids"][0].tolist()], GenerateConfig(max_new_tokens=20), eos_id=None).ids[0]
    assert theirs[prompt["input_ids"].shape[1]:] == mine and len(ours) > 0


def test_an_existing_sentencepiece_model_tokenizes_a_corpus_as_it_is(tmp_path):
    """tokenizer.kind: sentencepiece_file: a model trained elsewhere (llama-style ids: unk 0, bos 1,
    eos 2, no pad) encodes the corpus exactly as sentencepiece itself does."""
    import sentencepiece as spm

    texts = [story(i, 5) for i in range(300)]
    (tmp_path / "sample.txt").write_text("\n".join(t.replace("\n", " ") for t in texts))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "sample.txt"), model_prefix=str(tmp_path / "ext"),
                                   vocab_size=200, model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   minloglevel=2)
    folder = stories_spec(tmp_path, tokenizer={"kind": "sentencepiece_file", "path": str(tmp_path / "ext.model")})
    manifest = build(folder, workers=1)
    tok = tokenizer_from_dict(manifest["tokenizer"])
    assert (tok.bos_id, tok.eos_id, tok.pad_id, manifest["vocab_size"]) == (1, 2, None, 200)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "ext.model"))
    docs = list(corpus.iter_documents([tmp_path / "ds" / "corpus.txt"], "tinystories"))
    ds = open_dataset(folder)
    expected = np.concatenate([[1, *sp.encode(d), 2] for d in docs[20:]])
    assert np.array_equal(ds.train.tokens.astype(np.int64), expected)


def test_a_sentencepiece_file_without_bos_or_a_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.path"):
        load_dataset_spec(stories_spec(tmp_path, "a", tokenizer={"kind": "sentencepiece_file"}))
    folder = stories_spec(tmp_path, "b", tokenizer={"kind": "sentencepiece_file", "path": str(tmp_path / "none.model")})
    with pytest.raises(DataError, match="no such SentencePiece model"):
        build(folder, workers=1)


def test_an_existing_tokenizers_json_tokenizes_a_corpus_as_it_is(tmp_path):
    """tokenizer.kind: hf_json: a byte-level BPE tokenizer.json made with HuggingFace tokenizers
    encodes the corpus exactly as tokenizers itself does, its <s> and </s> around each document."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([story(i, 5) for i in range(300)], trainer)
    hf.save(str(tmp_path / "tokenizer.json"))
    folder = stories_spec(tmp_path, tokenizer={"kind": "hf_json", "path": str(tmp_path / "tokenizer.json")})
    manifest = build(folder, workers=1)
    tok = tokenizer_from_dict(manifest["tokenizer"])
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, None)
    docs = list(corpus.iter_documents([tmp_path / "ds" / "corpus.txt"], "tinystories"))
    expected = np.concatenate([[1, *hf.encode(d).ids, 2] for d in docs[20:]])
    assert np.array_equal(open_dataset(folder).train.tokens.astype(np.int64), expected)
    assert tok.decode(tok.encode(docs[0])) == docs[0]   # byte-level: every character round-trips
    (tmp_path / "bad.json").write_text(hf.to_str().replace('"</s>"', '"<end>"'))
    with pytest.raises(DataError, match="bos and an eos"):
        build(stories_spec(tmp_path, "c", tokenizer={"kind": "hf_json", "path": str(tmp_path / "bad.json")}), workers=1)


def test_vocabularies_past_65536_ids_are_stored_as_uint32():
    from tinylm.tokens.tokenizer import Tokenizer

    class Big(Tokenizer):
        vocab_size = 70_000

    assert Big().dtype == np.uint32
