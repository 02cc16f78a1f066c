"""Named architectures: dicts of GPTConfig fields (tinylm.model.gpt), which a run's `model` section
starts from and overrides."""

from __future__ import annotations

from tinylm.base.errors import ConfigError


def _demo() -> dict:
    return dict(vocab_size=77, block_size=128, n_layer=6, n_head=8, n_embd=128, n_kv_heads=None,
                head_dim=None, dropout=0.0, bias=False, attn_proj_bias=True, lm_head_bias=True,
                tie_embeddings=False, pos_encoding="learned", norm="rmsnorm", final_norm="layernorm_nobias",
                norm_eps=1e-5, mlp="silu", mlp_ratio=4.0)


def _reference_2025(n_embd: int) -> dict:
    # the 2025 models: the demo architecture, 24 layers x 16 heads, context 512, width varied
    return {**_demo(), "n_layer": 24, "n_head": 16, "n_embd": n_embd, "block_size": 512}


# vocab_size in a preset is the demo tokenizer's; a run sets it from its own tokenizer
PRESETS: dict[str, dict] = {
    # the reference demo model: 1,218,253 parameters
    "demo": _demo(),
    # the 2025 main model (~62M parameters) and its model-scaling study
    "main2025": _reference_2025(464),
    "scaling-192": _reference_2025(192),
    "scaling-320": _reference_2025(320),
    "scaling-464": _reference_2025(464),
    "scaling-880": _reference_2025(880),
    # the 2026 model: no attention-projection bias, ALiBi instead of learned positions
    "model2026": {**_demo(), "n_layer": 12, "n_head": 16, "n_embd": 384, "block_size": 512,
                  "attn_proj_bias": False, "pos_encoding": "alibi"},
    # a Llama-style small model: grouped-query attention, SwiGLU, RoPE, RMSNorm, tied embeddings, no biases
    "llama-gqa": {**_demo(), "n_layer": 5, "n_head": 8, "n_kv_heads": 4, "n_embd": 128, "block_size": 256,
                  "attn_proj_bias": False, "lm_head_bias": False, "tie_embeddings": True,
                  "pos_encoding": "rope", "final_norm": "rmsnorm", "mlp": "swiglu", "mlp_ratio": 2.75},
}


def model_preset(name: str) -> dict:
    """A copy of preset `name`'s GPTConfig fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}' (expected one of: {', '.join(PRESETS)})")
    return dict(PRESETS[name])
