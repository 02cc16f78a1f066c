"""Text tokenizers (char, word, SentencePiece with <pad> <unk> <bos> <eos>): digits and symbols kept,
minimum frequency, special tokens, padding masks; padding never counts in a loss or a perplexity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm.data.batches import IGNORE, make_batch, open_dataset
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.presets import model_preset
from tinylm.tokens.load import tokenizer_from_dict, write_bin
from tinylm.tokens.text import SPECIAL_TOKENS, train_sentencepiece, train_text_tokenizer
from tinylm.train.loop import loss_sums, perplexity

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STORIES = [
    "Once upon a time, Tom had 3 red balls.",
    "Lily saw 12 birds! She said: \"Wow, 12 birds & 1 cat.\"",
    "The dog ran to the park.\nIt was 5:30 and the sun was low.",
    "Tom paid $2.50 for a hat (50% off) #1.",
    "A cat.",
]
SYMBOLS = "On day 3, Tom paid $12.50 (tax: 7%)! #1 friend & co.\n\tA_b"


@pytest.mark.parametrize("level", ["char", "word"])
def test_digits_and_symbols_are_tokens_and_decode_back_exactly(level):
    tok = train_text_tokenizer(STORIES + [SYMBOLS], level=level)
    ids = tok.encode(SYMBOLS)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == SYMBOLS
    strings = "".join(tok.token_strings(ids))
    for kept in "3127%$#&(:)!._\t\n":
        assert kept in strings
    if level == "word":
        assert tok.token_strings(tok.encode("Tom paid 12"))[:2] == ["Tom", " paid"]
        assert tok.token_strings(tok.encode(" 12"))[0] == " 1"  # one piece per digit: no number is unknown


def test_minimum_frequency_sends_rare_pieces_to_unk():
    tok = train_text_tokenizer(STORIES, level="word", min_frequency=2)
    assert " birds" in tok.tokens and " hat" not in tok.tokens  # birds twice, hat once
    ids = tok.encode(" the cat was a hat")
    assert ids.tolist().count(tok.unk_id) == 1 and ids[-1] == tok.unk_id
    assert tok.decode(ids) == " the cat was a<unk>"
    chars = train_text_tokenizer(STORIES, level="char", min_frequency=3)
    assert "T" in chars.tokens and "$" not in chars.tokens


def test_special_tokens_wrap_each_document_and_decode_leaves_them_out():
    tok = train_text_tokenizer(STORIES, level="word")
    assert tok.tokens[:4] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    ids = tok.encode_examples(STORIES[:2])
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and (ids == tok.bos_id).sum() == 2
    assert tok.decode(ids) == STORIES[0] + STORIES[1]
    assert tok.encode("<eos>").tolist() != [tok.eos_id]  # text never makes a special token
    assert tok.token_id("<eos>") == tok.eos_id


def test_pad_gives_ids_and_the_mask_of_real_tokens():
    tok = train_text_tokenizer(STORIES, level="char")
    ids, mask = tok.pad([[5, 6, 7], [8]], length=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_training_is_deterministic_and_survives_to_dict():
    a = train_text_tokenizer(STORIES, level="word", vocab_size=30)
    b = train_text_tokenizer(list(reversed(STORIES)), level="word", vocab_size=30)
    assert a.tokens == b.tokens and a.vocab_size == 30
    sp = train_sentencepiece(STORIES * 20, model_type="unigram", vocab_size=80, specials=True)
    for tok in (a, train_text_tokenizer(STORIES, level="char"), sp):
        again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
        assert (again.kind, again.vocab_size, again.bos_id, again.eos_id, again.pad_id, again.unk_id) == \
            (tok.kind, tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id)
        assert np.array_equal(again.encode_examples(STORIES), tok.encode_examples(STORIES))


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_with_specials(model_type):
    tok = train_sentencepiece(STORIES * 20, model_type=model_type, vocab_size=120, specials=True)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    text = "Tom paid $12.50 (50% off)! #1 & 3 cats:\n"  # characters the corpus holds
    assert tok.decode(tok.encode(text)) == text and tok.unk_id not in tok.encode(text)
    ids = tok.encode_examples(["A cat é"])
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.unk_id in ids  # unknown: <unk>, no error
    assert tok.decode(ids[:-2]) == "A cat "


# -- padding in the loss and in perplexity ------------------------------------------------------


def text_dataset(tmp_path, tok, docs):
    ids = tok.encode_examples(docs)
    for split in ("train", "val"):
        write_bin(tmp_path / f"{split}.bin", ids)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size, "dtype": str(np.dtype(tok.dtype))}))
    return open_dataset(tmp_path)


def test_padding_never_counts_in_the_loss_or_the_perplexity(tmp_path):
    tok = train_text_tokenizer(STORIES, level="word")
    ds = text_dataset(tmp_path, tok, STORIES)
    lengths = np.diff(np.append(ds.val.starts, len(ds.val.tokens)))
    assert lengths.max() < 32 and len(set(lengths)) > 1  # documents of several lengths, each fits a row
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**model_preset("llama-gqa"), "vocab_size": tok.vocab_size, "n_layer": 2,
                             "n_embd": 32, "block_size": 64})).eval()
    with torch.no_grad():
        # one document per row, padded after its <eos> to 32 tokens, then to 64
        x, y = make_batch(ds, ds.val, ds.val.starts, 32, pack=False)
        assert (x == tok.pad_id).sum() > 0 and torch.equal(y == IGNORE, x == tok.pad_id)
        padded = loss_sums(model(x)[0], y)
        x64, y64 = make_batch(ds, ds.val, ds.val.starts, 64, pack=False)
        wider = loss_sums(model(x64)[0], y64)
        # each document alone, with no padding at all
        alone = torch.zeros(2)
        for start, n in zip(ds.val.starts, lengths):
            doc = torch.from_numpy(np.asarray(ds.val.tokens[start:start + n], dtype=np.int64))[None]
            alone += loss_sums(model(doc[:, :-1])[0], doc[:, 1:])
    assert padded[1] == wider[1] == alone[1] == int(lengths.sum() - len(lengths))
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(wider, alone, rtol=1e-5, atol=1e-4)
    ppl = perplexity(float(padded[0] / padded[1]))
    assert ppl == pytest.approx(math.exp(float(alone[0] / alone[1])), rel=1e-5)
    # averaging over the padding as if it were text gives another number
    with torch.no_grad():
        naive = F.cross_entropy(model(x)[0].flatten(0, 1), torch.where(y == IGNORE, tok.pad_id, y).flatten())
    assert abs(math.exp(float(naive)) - ppl) > 0.01 * ppl


def test_packed_rows_run_on_into_the_next_document(tmp_path):
    tok = train_text_tokenizer(STORIES, level="word")
    ds = text_dataset(tmp_path, tok, STORIES)
    x, y = make_batch(ds, ds.val, ds.val.starts[:1], 32)
    assert (x == tok.bos_id).sum() == 2 and (y != IGNORE).all()  # the second story follows the first


def test_unpacked_training_runs_and_needs_rows_at_documents(tmp_path):
    from tinylm.base.config import from_dict
    from tinylm.base.errors import ConfigError
    from tinylm.train.config import TrainConfig
    from tinylm.train.loop import run

    tok = train_text_tokenizer(STORIES, level="word")
    (tmp_path / "ds").mkdir()
    text_dataset(tmp_path / "ds", tok, STORIES * 4)
    base = dict(model={"preset": "llama-gqa", "n_layer": 1, "n_embd": 32, "block_size": 32}, max_steps=3,
                batch_size=4, eval_interval=3, eval_tokens=None, optim={"warmup_steps": 1}, device="cpu",
                out_dir=str(tmp_path / "run"), log={"progress": False, "tensorboard": False})
    with pytest.raises(ConfigError, match="data.pack: false needs data.aligned_fraction: 1.0"):
        from_dict(TrainConfig, {**base, "data": {"dataset": str(tmp_path / "ds"), "pack": False}})
    cfg = from_dict(TrainConfig, {**base, "data": {"dataset": str(tmp_path / "ds"), "pack": False,
                                                   "aligned_fraction": 1.0}})
    summary = run(cfg)
    assert summary["step"] == 3 and math.isfinite(summary["val_loss"])
