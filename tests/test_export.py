"""The HuggingFace export, checked in the real client: `transformers` loads the folder with no custom
code and computes tinylm's logits and greedy tokens; other architectures are refused by name."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from tinylm.checkpoint import save_checkpoint
from tinylm.cli import main
from tinylm.decode import GenerateConfig, generate
from tinylm.model import GPT, GPTConfig, model_preset
from tinylm.tokenizer import keyword_tokenizer


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
