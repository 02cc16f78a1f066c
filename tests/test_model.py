"""The GPT: causality, cached decoding == full recomputation, training, dropout, configs, presets."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tinylm.base.config import from_dict
from tinylm.base.errors import ConfigError
from tinylm.model.gpt import GPT, POS_ENCODINGS, GPTConfig
from tinylm.model.presets import PRESETS, model_preset

V = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> GPTConfig:
    fields = dict(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=32, t5_num_buckets=8,
                  t5_max_distance=16)
    return GPTConfig(**{**fields, **overrides})


def sharp_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A model in eval mode with weights large enough that positional mistakes show in the logits."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def tokens(*shape, seed=1) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


# -----------------------------------------------------------------------------
# Causality and the KV cache


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_future_tokens_never_change_past_logits(pos):
    model = sharp_model(tiny(pos_encoding=pos))
    x = tokens(2, 20)
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 1) % V
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def decode_incrementally(model: GPT, x: torch.Tensor, prefill: int, pad=None) -> torch.Tensor:
    """Logits for x fed as one prefill chunk, then one token at a time, through a cache."""
    cache = model.new_cache(x.size(0), x.size(1) + 3)
    if pad is not None:
        cache.pad = torch.tensor(pad)
    outs = [model(x[:, :prefill], cache=cache)[0]]
    for t in range(prefill, x.size(1)):
        outs.append(model(x[:, t:t + 1], cache=cache)[0])
    assert cache.length == x.size(1)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_cached_decoding_equals_full_forward(pos, n_kv_heads):
    model = sharp_model(tiny(pos_encoding=pos, n_kv_heads=n_kv_heads))
    x = tokens(3, 24)
    with torch.no_grad():
        full, _ = model(x)
        cached = decode_incrementally(model, x, prefill=5)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_left_padded_rows_match_their_unpadded_runs(pos):
    model = sharp_model(tiny(pos_encoding=pos, n_kv_heads=2))
    lengths, width = [20, 13, 7], 20
    rows = [tokens(1, n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    pad = [width - n for n in lengths]
    batch = torch.stack([torch.cat([torch.zeros(p, dtype=torch.long), r]) for p, r in zip(pad, rows)])
    with torch.no_grad():
        cached = decode_incrementally(model, batch, prefill=14, pad=pad)
        for b, row in enumerate(rows):
            full, _ = model(row[None])
            torch.testing.assert_close(cached[b, pad[b]:], full[0], rtol=0, atol=1e-5)


def test_cache_reorder_keeps_the_chosen_rows():
    model = sharp_model(tiny(pos_encoding="rope", n_kv_heads=2))
    x = tokens(3, 12)
    with torch.no_grad():
        cache = model.new_cache(3, 16)
        model(x[:, :8], cache=cache)
        # beams: keep row 2 twice and row 0 once
        index = torch.tensor([2, 2, 0])
        cache.reorder(index)
        nxt, _ = model(x[index, 8:12], cache=cache)
        full, _ = model(x[index])
        torch.testing.assert_close(nxt, full[:, 8:12], rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "alibi", "t5"])
def test_cache_slot_moves_leave_every_row_decoding_as_a_full_forward(pos_encoding):
    # the decoder's moves: drop slots no row sees, make room on the left, forget a row's last slots
    model = sharp_model(tiny(pos_encoding=pos_encoding, n_kv_heads=2))
    rows = [tokens(1, n)[0] for n in (8, 6, 7)]
    pad = [2, 4, 3]
    cache = model.new_cache(3, 24)
    cache.pad = torch.tensor(pad)

    def feed_one_and_compare(rows):
        nxt = torch.tensor([[5], [6], [7]])
        out, _ = model(nxt, cache=cache)
        rows = [torch.cat([r, n]) for r, n in zip(rows, nxt)]
        for b, row in enumerate(rows):
            torch.testing.assert_close(out[b, -1], model(row[None])[0][0, -1], rtol=0, atol=1e-5)
        return rows

    with torch.no_grad():
        model(torch.stack([torch.cat([torch.zeros(p, dtype=torch.long), r]) for p, r in zip(pad, rows)]), cache=cache)
        rows = feed_one_and_compare(rows)
        cache.drop_leading(2)
        assert cache.length == 9 and cache.pad.tolist() == [0, 2, 1]
        rows = feed_one_and_compare(rows)
        cache.grow_left(13)
        assert cache.pad.tolist() == [3, 5, 4]
        rows = feed_one_and_compare(rows)
        cache.shift_rows(torch.tensor([2, 0, 1]))
        rows = feed_one_and_compare([rows[0][:-2], rows[1], rows[2][:-1]])


def test_cache_overflow_and_absolute_positions_beyond_block_size_raise():
    model = GPT(tiny(block_size=8))
    cache = model.new_cache(1, 12)
    with torch.no_grad():
        model(tokens(1, 8), cache=cache)
        with pytest.raises(ValueError, match="block_size"):
            model(tokens(1, 1), cache=cache)
        with pytest.raises(ValueError, match="slots"):
            model(tokens(1, 5), cache=model.new_cache(1, 4))
        # left padding keeps positions below block_size even past 8 slots
        cache = model.new_cache(1, 12)
        cache.pad = torch.tensor([4])
        model(tokens(1, 12), cache=cache)


# -----------------------------------------------------------------------------
# Learned tables per layer, head and distance


def distance_table(attn) -> torch.Tensor:
    """A layer's learned distance table: Er (nh, L, hs) for relative_heads, the bias (nh, L) for distance_bias."""
    return attn.Er if hasattr(attn, "Er") else attn.dist_bias


@pytest.mark.parametrize("pos, shape", [("relative_heads", (4, 32, 8)), ("distance_bias", (4, 32))])
def test_every_layer_and_head_has_its_own_distance_table(pos, shape):
    model = sharp_model(tiny(pos_encoding=pos, n_kv_heads=2))  # 4 query heads, 32 distances, hs 8
    tables = [distance_table(block.attn) for block in model.blocks]
    assert [tuple(t.shape) for t in tables] == [shape, shape]
    assert len({t.data_ptr() for t in tables}) == 2
    _, loss = model(tokens(3, 20), tokens(3, 20, seed=2))
    loss.backward()
    for table in tables:
        per_head = table.grad.flatten(1)  # (nh, ...): distances 0..19 were used
        assert (per_head.abs().sum(1) > 0).all()  # a gradient reaches every head's table
        assert not torch.allclose(per_head[0], per_head[1])  # and it differs between heads
        assert (table.grad[:, 20:] == 0).all()  # distances the batch never had get none


def distance_tables(model: GPT) -> dict[str, tuple[torch.Tensor, int]]:
    """Every layer's distance table in the state dict (shares the parameters' storage), with its distance axis."""
    return {name: (t, -2 if name.endswith("Er") else -1) for name, t in model.state_dict().items()
            if name.endswith((".Er", ".dist_bias"))}


@pytest.mark.parametrize("pos", ["distance_bias", "relative", "relative_heads"])
def test_distances_past_the_table_use_its_last_entry(pos):
    short = sharp_model(tiny(pos_encoding=pos, block_size=8))
    long = GPT(tiny(pos_encoding=pos, block_size=12)).eval()
    state = short.state_dict()
    for name, (table, axis) in distance_tables(short).items():  # 12 entries: the 8 and the last one 4 times more
        state[name] = torch.cat([table] + [table.narrow(axis, 7, 1)] * 4, dim=axis)
    long.load_state_dict(state)
    x = tokens(2, 12)  # distances up to 11
    with torch.no_grad():
        want = long(x)[0]
        torch.testing.assert_close(short(x)[0], want, rtol=0, atol=1e-5)
        torch.testing.assert_close(decode_incrementally(short, x, prefill=3), want, rtol=0, atol=1e-5)
        for table, axis in distance_tables(long).values():  # the test can fail: entry 10 does matter
            table.select(axis, 10).add_(1.0)
        assert not torch.allclose(long(x)[0][:, 10:], want[:, 10:])


# -----------------------------------------------------------------------------
# Training and loss


VARIANTS = {
    **{f"pos-{p}": dict(pos_encoding=p) for p in POS_ENCODINGS},
    "gelu": dict(mlp="gelu"),
    "swiglu": dict(mlp="swiglu", mlp_ratio=2.0),
    "layernorm-bias": dict(norm="layernorm", bias=True, final_norm="layernorm"),
    "post-norms": dict(post_attn_norm=True, post_mlp_norm=True, final_norm="rmsnorm"),
    "no-final-norm": dict(final_norm="none"),
    "gqa-tied": dict(n_kv_heads=2, tie_embeddings=True, lm_head_bias=False),
    "mqa-head-dim": dict(n_kv_heads=1, head_dim=12),
    "dropout": dict(dropout=0.1),
}


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_a_few_steps_lower_the_loss(overrides):
    torch.manual_seed(0)
    model = GPT(tiny(**overrides))
    data = tokens(8, 17, seed=3)
    x, y = data[:, :-1], data[:, 1:]
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-2, betas=(0.9, 0.95), device_type="cpu")
    model.train()
    losses = []
    for _ in range(15):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        _, final = model(x, y)
    assert final.item() < losses[0] - 0.3, (losses[0], final.item())


def test_loss_ignores_minus_100_and_masked_positions():
    model = sharp_model(tiny())
    x = tokens(2, 10)
    y = tokens(2, 10, seed=2)
    y[0, 0] = -100
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False
    logits, loss = model(x, y, loss_mask=mask)
    keep = (y != -100) & mask
    expected = F.cross_entropy(logits[keep], y[keep])
    torch.testing.assert_close(loss, expected)
    assert model(x)[1] is None


def test_dropout_applies_in_train_mode_only():
    model = GPT(tiny(dropout=0.5))
    x = tokens(2, 10)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
        model.train()
        assert not torch.allclose(model(x)[0], model(x)[0])


def test_optimizer_decays_only_matrices():
    model = GPT(tiny(bias=True, norm="layernorm"))
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert model.estimate_flops_per_token() > 6 * model.num_params(non_embedding=True)


# -----------------------------------------------------------------------------
# Configs and presets


@pytest.mark.parametrize("data, message", [
    ({"n_layers": 2}, "unknown key 'n_layers'"),
    ({"n_head": 5}, "n_head (5) must divide n_embd (128)"),
    ({"n_kv_heads": 3}, "n_kv_heads (3) must divide n_head (8)"),
    ({"pos_encoding": "rotary"}, "'pos_encoding' must be one of"),
    ({"mlp": "relu"}, "'mlp' must be one of"),
    ({"pos_encoding": "rope", "n_embd": 120}, "rope needs an even head_dim"),
])
def test_bad_configs_raise_config_error(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(GPTConfig, data, where="model.yaml")
    assert message in str(err.value) and "model.yaml" in str(err.value)


def test_constructing_a_model_validates_its_config():
    with pytest.raises(ConfigError, match="final_norm"):
        GPT(GPTConfig(final_norm="batchnorm"))


def test_head_dim_is_independent_of_width():
    model = GPT(tiny(n_embd=24, n_head=4, head_dim=10))
    assert model.blocks[0].attn.qkv.weight.shape == (3 * 4 * 10, 24)
    assert model(tokens(1, 5))[0].shape == (1, 5, V)


def build_on_meta(name: str) -> GPT:
    with torch.device("meta"):
        return GPT(from_dict(GPTConfig, model_preset(name)))


def test_presets():
    assert set(PRESETS) >= {"demo", "main2025", "scaling-192", "scaling-320", "scaling-464", "scaling-880",
                            "model2026", "llama-gqa"}
    assert build_on_meta("demo").num_params() == 1_218_253
    assert 60e6 < build_on_meta("main2025").num_params() < 64e6
    assert [build_on_meta(f"scaling-{w}").config.n_embd for w in (192, 320, 464, 880)] == [192, 320, 464, 880]
    m2026 = build_on_meta("model2026")
    assert (m2026.config.n_layer, m2026.config.n_embd, m2026.config.pos_encoding) == (12, 384, "alibi")
    llama = build_on_meta("llama-gqa")
    assert llama.config.kv_heads == 4 and llama.lm_head.weight is llama.wte.weight
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_preset("gpt5")


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "t5", "distance_bias", "relative",
                                 "relative_heads", "none"])
def test_attention_maps_come_out_of_the_same_forward(pos):
    """The opt-in explicit attention gives the fused kernel's logits, and probabilities that are
    causal rows summing to 1, one (B, nh, T, T) map per layer, for every positional encoding."""
    from tinylm.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, pos_encoding=pos)).eval()
    with torch.no_grad():   # positional tables away from their zero start, so that they matter
        for name, p in model.named_parameters():
            if "Er" in name or "dist_bias" in name or "rel" in name:
                p.normal_(0, 0.5)
    idx = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        fused = model(idx)[0]
    logits, maps = model.forward_with_attention(idx)
    torch.testing.assert_close(logits, fused, atol=1e-5, rtol=1e-5)
    assert len(maps) == 2 and all(m.shape == (2, 4, 20, 20) for m in maps)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 20))
        assert m.triu(1).abs().max() == 0   # no query sees a later token
    assert all(not block.attn.recording and block.attn.probs is None for block in model.blocks)
