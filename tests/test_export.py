"""The exports, checked in the real clients: `transformers` loads the HuggingFace folder with no custom
code and computes tinylm's logits and greedy tokens; llama2.c's run.c, compiled, samples the
llama2.c export to tinylm's greedy text; other architectures are refused by name."""

from __future__ import annotations

import subprocess
from dataclasses import asdict

import pytest
import torch

from tinylm.cli import main
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.presets import model_preset
from tinylm.tokens.text import train_sentencepiece
from tinylm.tokens.tokenizer import keyword_tokenizer


def llama_checkpoint(tmp_path, **changes):
    torch.manual_seed(0)
    tok = keyword_tokenizer("demo")
    cfg = GPTConfig(**{**model_preset("llama-gqa"), "vocab_size": tok.vocab_size, "n_layer": 2, **changes})
    model = GPT(cfg).eval()
    with torch.no_grad():   # norms away from 1, so that a norm mapped to the wrong place shows
        for name, p in model.named_parameters():
            if "norm" in name or "ln_f" in name:
                p.uniform_(0.5, 1.5)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model_config=asdict(cfg), model_state=model.state_dict(), tokenizer=tok.to_dict())
    return path, model


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False, "n_kv_heads": 2}, {"n_kv_heads": 8}])
def test_transformers_computes_the_same_logits_and_greedy_tokens(tmp_path, changes):
    transformers = pytest.importorskip("transformers")
    path, model = llama_checkpoint(tmp_path, **changes)
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(path), "--format", "hf", "--out", str(out)]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    prompts = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(prompts)[0]
        theirs = hf(prompts).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    ids = prompts[0, :10].tolist()
    greedy = generate(model, [ids], GenerateConfig(max_new_tokens=20), eos_id=None).ids[0]
    with torch.no_grad():
        prompt = torch.tensor([ids])   # the mask given: generate would otherwise mask every id equal to pad's
        hf_ids = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    assert hf_ids == greedy


def test_transformers_tokenizer_gives_tinylm_ids_and_text(tmp_path):
    transformers = pytest.importorskip("transformers")
    path, model, tok = story_checkpoint(tmp_path)
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(path), "--format", "hf", "--out", str(out)]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    for text in ["Once upon a time", " The dog  liked to run. Tom had", "Lily saw a big tree"]:
        ids = hf_tok(text)["input_ids"]
        assert ids == [tok.bos_id] + tok.encode(text).tolist()   # <bos> first, as every training document
        assert hf_tok.decode(ids, skip_special_tokens=True) == text
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = hf_tok("Once upon a time", return_tensors="pt")
    with torch.no_grad():
        hf_ids = hf.generate(**prompt, max_new_tokens=12, do_sample=False, eos_token_id=None)[0].tolist()
    ours = generate(model, [prompt["input_ids"][0].tolist()], GenerateConfig(max_new_tokens=12), eos_id=None).ids[0]
    assert hf_ids[prompt["input_ids"].shape[1]:] == ours


@pytest.mark.parametrize("changes,switch", [
    ({"pos_encoding": "alibi"}, "pos_encoding: 'alibi'"),
    ({"norm": "layernorm"}, "norm: 'layernorm'"),
    ({"mlp": "gelu"}, "mlp: 'gelu'"),
    ({"bias": True}, "bias: True"),
])
def test_a_switch_without_a_llama_equivalent_is_named(tmp_path, capsys, changes, switch):
    path, _ = llama_checkpoint(tmp_path, **changes)
    assert main(["export", "--checkpoint", str(path), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and switch in err and err.count("\n") == 1
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".hf*"))


# -----------------------------------------------------------------------------
# llama2.c: the real run.c, compiled, samples the exported model


STORIES = ["Once upon a time there was a little dog. The dog liked to run in the park with a red ball.",
           "One day a girl named Lily saw a big tree. She wanted to climb it, but it was too tall.",
           "Tom had a toy car. He played with it every day and was very happy with his friends."] * 20


def story_checkpoint(tmp_path, **changes):
    tok = train_sentencepiece(STORIES, model_type="bpe", vocab_size=80, specials=True)
    torch.manual_seed(0)
    cfg = GPTConfig(**{**model_preset("llama-gqa"), "vocab_size": tok.vocab_size, "n_layer": 2,
                       "block_size": 64, **changes})
    model = GPT(cfg).eval()
    with torch.no_grad():   # large weights: decisive, position-dependent greedy choices; norms away from 1
        for name, p in model.named_parameters():
            p.uniform_(0.5, 1.5) if "norm" in name or "ln_f" in name else p.mul_(8.0)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model_config=asdict(cfg), model_state=model.state_dict(), tokenizer=tok.to_dict())
    return path, model, tok


def run_c_matches_tinylm(run_c, checkpoint, model, tok, out, prompt: str = "Once upon a time", steps: int = 48):
    """Export `checkpoint` for llama2.c and assert run.c's greedy text is tinylm's; the continuation."""
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "llama2c", "--out", str(out)]) == 0
    # run.c reads <bos>, a dummy-prefix space, then the prompt's pieces, and prints every piece
    # after <bos> (the first one without its leading space)
    ids = [tok.bos_id] + tok.encode(" " + prompt).tolist()
    greedy = generate(model, [ids], GenerateConfig(max_new_tokens=steps - len(ids) + 1), eos_id=None).ids[0]
    assert tok.bos_id not in greedy   # run.c stops at <bos>
    specials = {tok.eos_id: "\n</s>\n", tok.pad_id: "<pad>", tok.unk_id: "<unk>"}
    expected = "".join(specials.get(i) or tok.decode([i]) for i in ids[1:] + greedy)[1:]
    done = subprocess.run([str(run_c), str(out / "model.bin"), "-z", str(out / "tokenizer.bin"), "-t", "0",
                           "-n", str(steps), "-i", prompt], capture_output=True, text=True, check=True)
    assert done.stdout == expected + "\n"
    return greedy


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False, "n_kv_heads": 2}])
def test_llama2c_run_c_samples_tinylm_greedy_text(tmp_path, run_c, changes):
    path, model, tok = story_checkpoint(tmp_path, **changes)
    greedy = run_c_matches_tinylm(run_c, path, model, tok, tmp_path / "l2c")
    assert len(set(greedy)) > 3   # a varied continuation


def test_llama2c_export_refuses_what_run_c_cannot_compute(tmp_path, capsys):
    path, _, _ = story_checkpoint(tmp_path, rope_theta=500000.0)
    assert main(["export", "--checkpoint", str(path), "--format", "llama2c", "--out", str(tmp_path / "a")]) == 2
    assert "rope_theta" in capsys.readouterr().err
    keyword, _ = llama_checkpoint(tmp_path)   # a TinyPy keyword tokenizer: no <bos> to start run.c's prompts
    assert main(["export", "--checkpoint", str(keyword), "--format", "llama2c", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "SentencePiece" in err and err.count("\n") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
