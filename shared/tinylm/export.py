"""Checkpoints out of tinylm: HuggingFace `transformers` folders.

    tinylm export --checkpoint best.pt --format hf --out DIR    # AutoModelForCausalLM.from_pretrained(DIR)

The target is Llama (`LlamaForCausalLM`, no custom code): a model exports when its switches are
Llama's (RoPE, RMSNorm before attention, MLP and the head, SwiGLU, no biases; grouped-query
attention and tied embeddings allowed), as the `llama-gqa` preset's are. Any other switch stops the
export with one line naming it, since `transformers` would compute something else. The layouts
differ only in names: both rotate channel i with channel i + head_dim/2 of each head, and both let
query head h read key/value head h // (n_head / n_kv_heads). Weights go to model.safetensors; the
tokenizer travels as tinylm's own description (tinylm.json), not yet as `transformers` files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tinylm.checkpoint import load_model
from tinylm.cli import ArgumentParser
from tinylm.errors import ConfigError, DataError
from tinylm.files import atomic_path, atomic_write_json
from tinylm.model import GPT

LLAMA_SWITCHES = {"pos_encoding": "rope", "norm": "rmsnorm", "final_norm": "rmsnorm", "mlp": "swiglu",
                  "bias": False, "attn_proj_bias": False, "lm_head_bias": False, "post_attn_norm": False,
                  "post_mlp_norm": False, "dropout": 0.0}
"""GPTConfig fields that must hold these values for a Llama export (dropout: inference only)."""


def check_llama(model: GPT, where: str) -> None:
    """ConfigError naming the first switch of `model` that Llama does not have."""
    c = model.config
    for key, wanted in LLAMA_SWITCHES.items():
        value = getattr(c, key)
        if key == "attn_proj_bias" and value is None:
            value = c.bias
        if key == "dropout":
            continue
        if value != wanted:
            raise ConfigError(f"{where}: {key}: {value!r} has no Llama equivalent (export needs {key}: {wanted!r}; "
                              f"presets with Llama's switches: llama-gqa)")


def _hidden(model: GPT) -> int:
    return model.blocks[0].mlp.proj.weight.shape[1]


def llama_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under `transformers`' LlamaForCausalLM names (rotate-half rotary layout)."""
    c = model.config
    nh, nkv, hs = c.n_head, c.kv_heads, c.hs
    out = {"model.embed_tokens.weight": model.wte.weight, "model.norm.weight": model.ln_f.weight}
    if not c.tie_embeddings:
        out["lm_head.weight"] = model.lm_head.weight
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split([nh * hs, nkv * hs, nkv * hs])
        gate, up = block.mlp.fc.weight.chunk(2)
        out.update({p + "input_layernorm.weight": block.norm1.weight, p + "self_attn.q_proj.weight": q,
                    p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                    p + "self_attn.o_proj.weight": block.attn.proj.weight,
                    p + "post_attention_layernorm.weight": block.norm2.weight, p + "mlp.gate_proj.weight": gate,
                    p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": block.mlp.proj.weight})
    return {k: t.detach().to(torch.float32).contiguous().clone() for k, t in out.items()}


def hf_config(model: GPT, tokenizer) -> dict:
    c = model.config
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
            "hidden_size": c.n_embd, "intermediate_size": _hidden(model), "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head, "num_key_value_heads": c.kv_heads, "head_dim": c.hs,
            "hidden_act": "silu", "max_position_embeddings": c.block_size, "rms_norm_eps": c.norm_eps,
            "rope_theta": c.rope_theta, "attention_bias": False, "mlp_bias": False,
            "tie_word_embeddings": c.tie_embeddings, "torch_dtype": "float32",
            "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """A folder `transformers.AutoModelForCausalLM.from_pretrained` loads without custom code:
    config.json, generation_config.json (greedy, the tokenizer's end id) and model.safetensors."""
    model, tokenizer, _ = load_model(checkpoint)
    check_llama(model, str(checkpoint))
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ConfigError("export --format hf writes safetensors, which is not installed; pip install 'tinylm[hf]'") from None
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_file(llama_tensors(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(model, tokenizer), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"do_sample": False, "eos_token_id": tokenizer.eos_id, "bos_token_id": tokenizer.bos_id,
             "pad_token_id": tokenizer.pad_id}, indent=2) + "\n")
        atomic_write_json(tmp / "tinylm.json", {"checkpoint": str(checkpoint), "tokenizer": tokenizer.to_dict()})
    return out


def cli(argv: list[str]) -> int:
    ap = ArgumentParser(prog="tinylm export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt)")
    ap.add_argument("--format", required=True, choices=("hf",))
    ap.add_argument("--out", required=True, help="output folder (must not exist)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        raise DataError(f"{out}: exists; export into a new folder")
    if not Path(args.checkpoint).is_file():
        raise DataError(f"{args.checkpoint}: no such checkpoint")
    written = export_hf(args.checkpoint, out)
    print(f"wrote {written} ({', '.join(sorted(p.name for p in written.iterdir()))})")
    return 0

