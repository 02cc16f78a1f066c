"""Importing reference framework checkpoints reproduces the reference model's logits.

The golden checkpoint's tests skip without the golden data; the layouts, the cached decoding and
the command line are tested on small models this file saves in the reference layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import golden_dir

from tinylm.base.errors import DataError
from tinylm.interop.reference import convert_reference_state_dict, import_reference_checkpoint
from tinylm.model.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def golden_model():
    return import_reference_checkpoint(golden_dir("reference_checkpoint") / "best-model.pth")


def test_golden_checkpoint_reproduces_reference_logits():
    folder = golden_dir("reference_checkpoint")
    model, cfg = golden_model()
    ids = torch.from_numpy(np.load(folder / "input_ids.npy").astype(np.int64))  # (4, 128)
    expected = np.load(folder / "logits.npy")  # (4, 128, 77)
    with torch.no_grad():
        logits, _ = model(ids)
    # README: max error 1.9e-6 measured (fp32, CPU); allowed 1e-5 for other BLAS kernels
    np.testing.assert_allclose(logits.numpy(), expected, rtol=0, atol=1e-5)
    assert model.num_params() == 1_218_253
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.vocab_size) == (6, 8, 128, 128, 77)


def to_per_head_reference_layout(model: GPT) -> dict:
    """Our weights under the demo reference's names (eight per-head K/Q/V Linears, a position table)."""
    c, sd = model.config, model.state_dict()
    out = {"token_embedding_table.weight": sd["wte.weight"], "position_embedding_table.weight": sd["wpe.weight"],
           "ln_f.weight": sd["ln_f.weight"], "lm_head.weight": sd["lm_head.weight"],
           "lm_head.bias": sd["lm_head.bias"]}
    for i in range(c.n_layer):
        b = f"blocks.{i}."
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3)
        for part, weight in (("query", q), ("key", k), ("value", v)):
            for h, head in enumerate(weight.chunk(c.n_head)):
                out[f"{b}sa.heads.{h}.{part}.weight"] = head
        out[b + "sa.proj.weight"], out[b + "sa.proj.bias"] = sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"]
        out[b + "ffwd.net.0.weight"] = sd[b + "mlp.fc.weight"]
        out[b + "ffwd.net.2.weight"] = sd[b + "mlp.proj.weight"]
        out[b + "ln1.weight"] = sd[b + "norm1.weight"]
        out[b + "ln2.weight"] = sd[b + "norm2.weight"]
    return out


@pytest.fixture
def small_reference_checkpoint(tmp_path) -> tuple[GPT, object]:
    """A 2-layer model of the demo reference's architecture, saved in the reference's per-head layout."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=77, block_size=48, n_layer=2, n_head=2, n_embd=16, attn_proj_bias=True)).eval()
    path = tmp_path / "best-model.pth"
    torch.save(to_per_head_reference_layout(model), path)
    return model, path


def test_per_head_layout_round_trips(small_reference_checkpoint):
    model, path = small_reference_checkpoint
    fields, _ = convert_reference_state_dict(to_per_head_reference_layout(model))
    assert GPTConfig(**fields) == model.config
    imported, _ = import_reference_checkpoint(path)
    ids = torch.randint(0, 77, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(imported(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_cached_decoding_of_an_imported_model_matches_its_full_forward(small_reference_checkpoint):
    model, _ = import_reference_checkpoint(small_reference_checkpoint[1])
    ids = torch.randint(0, 77, (4, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, _ = model(ids)
        cache = model.new_cache(4, 40)
        steps = [model(ids[:, t:t + 1], cache=cache)[0] for t in range(40)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)


def test_cli_writes_a_loadable_checkpoint(tmp_path, small_reference_checkpoint, capsys):
    from tinylm.cli import main
    from tinylm.model.checkpoint import load_model

    reference, src = small_reference_checkpoint
    dst = tmp_path / "demo.pt"
    assert main(["import-reference", str(src), str(dst), "--vocab", "demo"]) == 0
    assert f"{reference.num_params():,} parameters, 2 layers x 16, learned positions" in capsys.readouterr().out
    model, tokenizer, ckpt = load_model(dst)
    ids = torch.randint(0, 77, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], reference(ids)[0], rtol=0, atol=0)
    assert tokenizer.vocab_size == 77 and ckpt["model_config"]["pos_encoding"] == "learned"
    assert main(["import-reference", str(src), str(tmp_path / "m2.pt"), "--vocab", "alpha"]) == 0  # 52 <= 77
    assert main(["import-reference", str(dst), str(tmp_path / "again.pt")]) == 2
    assert "already a tinylm checkpoint" in capsys.readouterr().err


def test_foreign_state_dicts_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="missing 'token_embedding_table.weight'"):
        convert_reference_state_dict({"wte.weight": torch.zeros(3, 4)})
    sd = {"token_embedding_table.weight": torch.zeros(77, 16), "blocks.0.ln1.weight": torch.ones(16)}
    with pytest.raises(DataError, match="missing 'blocks.0.sa.heads.0.query.weight'"):
        convert_reference_state_dict(sd)
    with pytest.raises(DataError, match="no such file"):
        import_reference_checkpoint(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read"):
        import_reference_checkpoint(tmp_path / "junk.pth")


def to_fused_reference_layout(model: GPT) -> dict:
    """Our weights under the 2026 reference's names (fused c_attn, ALiBi slopes buffer `m`)."""
    c, sd = model.config, model.state_dict()
    from tinylm.model.gpt import alibi_slopes

    out = {"token_embedding_table.weight": sd["wte.weight"], "ln_f.weight": sd["ln_f.weight"],
           "lm_head.weight": sd["lm_head.weight"], "lm_head.bias": sd["lm_head.bias"]}
    for i in range(c.n_layer):
        b = f"blocks.{i}."
        out[b + "sa.c_attn.weight"] = sd[b + "attn.qkv.weight"]
        out[b + "sa.c_proj.weight"] = sd[b + "attn.proj.weight"]
        out[b + "sa.m"] = alibi_slopes(c.n_head).view(1, c.n_head, 1, 1)
        out[b + "ffwd.net.0.weight"] = sd[b + "mlp.fc.weight"]
        out[b + "ffwd.net.2.weight"] = sd[b + "mlp.proj.weight"]
        out[b + "ln1.weight"] = sd[b + "norm1.weight"]
        out[b + "ln2.weight"] = sd[b + "norm2.weight"]
    return out


def test_fused_alibi_layout_round_trips(tmp_path):
    cfg = GPTConfig(vocab_size=40, block_size=512, n_layer=2, n_head=4, n_embd=32, attn_proj_bias=False,
                    pos_encoding="alibi")
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    fields, state = convert_reference_state_dict(to_fused_reference_layout(model))
    assert GPTConfig(**fields) == cfg
    torch.save(to_fused_reference_layout(model), tmp_path / "ref2026.pth")
    imported, _ = import_reference_checkpoint(tmp_path / "ref2026.pth")
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(imported(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_greedy_decoding_with_the_cache_reproduces_reference_generations():
    # while prompt + generation fit in block_size, the reference's sliding window never slides
    examples = json.loads((golden_dir("reference_checkpoint") / "greedy_generations.json").read_text())[:2]
    model, cfg = golden_model()
    steps = 60
    with torch.no_grad():
        for ex in examples:
            assert len(ex["prompt_ids"]) + steps <= cfg.block_size
            cache = model.new_cache(1, cfg.block_size)
            logits, _ = model(torch.tensor([ex["prompt_ids"]]), cache=cache)
            generated = []
            for _ in range(steps):
                generated.append(int(logits[0, -1].argmax()))
                logits, _ = model(torch.tensor([[generated[-1]]]), cache=cache)
            assert generated == ex["generated_ids"][:steps]
