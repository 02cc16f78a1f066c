"""Checkpoints out of tinylm: HuggingFace `transformers` folders and llama2.c model files.

    tinylm export --checkpoint best.pt --format hf --out DIR       # AutoModelForCausalLM.from_pretrained(DIR)
    tinylm export --checkpoint best.pt --format llama2c --out DIR  # ./run DIR/model.bin -z DIR/tokenizer.bin

The target is Llama (`LlamaForCausalLM`, no custom code): a model exports when its switches are
Llama's (RoPE, RMSNorm before attention, MLP and the head, SwiGLU, no biases; grouped-query
attention and tied embeddings allowed), as the `llama-gqa` preset's are. Any other switch stops the
export with one line naming it, since `transformers` would compute something else. The layouts
differ only in names: both rotate channel i with channel i + head_dim/2 of each head, and both let
query head h read key/value head h // (n_head / n_kv_heads). Weights go to model.safetensors. A
SentencePiece tokenizer goes along as `tokenizer.model` with a `tokenizer_config.json` naming its
special pieces, so `AutoTokenizer` gives tinylm's ids (a text tokenizer's <bos> first, as the
model saw every document) and decodes them to the same text; the TinyPy keyword and char
tokenizers have no exact `transformers` form, so their ids travel as tinylm's own description
(tinylm.json, written for every export).

llama2.c (`run.c`) reads the same Llama shape with three fixed habits, which the export meets:
its legacy `model.bin` (7 int32 fields, then fp32 weights in its order), rotary pairs of adjacent
channels (2i, 2i + 1) at base 10,000 (so each head's query and key rows are interleaved from
tinylm's halves), and token ids unk = 0, BOS = 1, EOS = 2 (every prompt starts with BOS; the
vocabulary is permuted so that tinylm's own special ids land there, an exact relabelling). It
needs a text tokenizer with BOS and EOS (SentencePiece); `tokenizer.bin` holds each piece with
its score, spaces as spaces, BOS and EOS written as llama2.c's own export writes them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, atomic_write_json
from tinylm.model.checkpoint import load_model
from tinylm.model.gpt import GPT
from tinylm.tokens.text import SentencePieceTokenizer

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


def hf_tokenizer_config(tokenizer: SentencePieceTokenizer) -> dict:
    """tokenizer_config.json for `tokenizer.model`: the SentencePiece ids as they are, nothing added
    to or taken from the text (no dummy prefix, no space clean-up), <bos> first on text tokenizers."""
    sp = tokenizer.sp
    specials = {f"{name}_token": sp.id_to_piece(getattr(tokenizer, f"{name}_id"))
                for name in ("bos", "eos", "unk", "pad") if getattr(tokenizer, f"{name}_id") is not None}
    return {"tokenizer_class": "LlamaTokenizer", **specials, "add_bos_token": tokenizer.bos_id is not None,
            "add_eos_token": False, "legacy": True, "add_prefix_space": False,
            "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False}


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """A folder `transformers.AutoModelForCausalLM.from_pretrained` loads without custom code:
    config.json, generation_config.json (greedy, the tokenizer's end id) and model.safetensors,
    plus tokenizer.model and tokenizer_config.json for a SentencePiece tokenizer."""
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
        if isinstance(tokenizer, SentencePieceTokenizer):
            (tmp / "tokenizer.model").write_bytes(tokenizer.model_proto)
            atomic_write_json(tmp / "tokenizer_config.json", hf_tokenizer_config(tokenizer))
        atomic_write_json(tmp / "tinylm.json", {"checkpoint": str(checkpoint), "tokenizer": tokenizer.to_dict()})
    return out


# -----------------------------------------------------------------------------
# llama2.c


LLAMA2C_SPECIALS = {"unk_id": 0, "bos_id": 1, "eos_id": 2}
"""The ids run.c assumes: unknown, BOS (starts every prompt, and stops generation), EOS."""


def llama2c_vocab_order(tokenizer) -> list[int]:
    """Export id -> tinylm id: unk, BOS and EOS first (as run.c expects), every other id in order."""
    first = [getattr(tokenizer, key) for key in LLAMA2C_SPECIALS]
    return first + [i for i in range(tokenizer.vocab_size) if i not in first]


def _interleave_rope(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Query/key rows of each head from tinylm's halves (i, i + hs/2) to run.c's pairs (2i, 2i + 1)."""
    rows, cols = w.shape
    return w.view(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def llama2c_model_bytes(model: GPT, order: list[int]) -> bytes:
    """model.bin in llama2.c's legacy layout: header, then every tensor as fp32 in run.c's order."""
    c = model.config
    index = torch.tensor(order)
    shared = c.tie_embeddings
    header = struct.pack("7i", c.n_embd, _hidden(model), c.n_layer, c.n_head, c.kv_heads,
                         c.vocab_size if shared else -c.vocab_size, c.block_size)
    blocks, kv = model.blocks, c.kv_heads * c.hs
    q, k, v = zip(*(b.attn.qkv.weight.split([c.n_embd, kv, kv]) for b in blocks))
    per_layer = [
        [b.norm1.weight for b in blocks],                    # rms_att
        [_interleave_rope(w, c.n_head) for w in q],           # wq
        [_interleave_rope(w, c.kv_heads) for w in k],         # wk
        v,                                                    # wv
        [b.attn.proj.weight for b in blocks],                # wo
        [b.norm2.weight for b in blocks],                    # rms_ffn
        [b.mlp.fc.weight.chunk(2)[0] for b in blocks],       # w1: gate
        [b.mlp.proj.weight for b in blocks],                 # w2: down
        [b.mlp.fc.weight.chunk(2)[1] for b in blocks],       # w3: up
    ]
    tensors = [model.wte.weight[index]] + [w for layer_tensors in per_layer for w in layer_tensors]
    rope_table = torch.zeros(c.block_size, c.hs // 2)   # run.c skips these (it computes RoPE itself)
    tensors += [model.ln_f.weight, rope_table, rope_table]
    if not shared:
        tensors.append(model.lm_head.weight[index])
    body = b"".join(t.detach().to(torch.float32).contiguous().numpy().tobytes() for t in tensors)
    return header + body


def llama2c_tokenizer_bytes(tokenizer: SentencePieceTokenizer, order: list[int]) -> bytes:
    """tokenizer.bin: int32 longest piece in bytes, then per export id a float32 score, an int32
    length and the piece's UTF-8 bytes (spaces as spaces; BOS and EOS as llama2.c writes them)."""
    sp = tokenizer.sp
    special = {tokenizer.bos_id: "\n<s>\n", tokenizer.eos_id: "\n</s>\n"}
    pieces, scores = [], []
    for i in order:
        text = special.get(i, sp.id_to_piece(i).replace("\u2581", " "))
        pieces.append(text.encode("utf-8"))
        scores.append(sp.get_score(i))
    out = [struct.pack("i", max(len(p) for p in pieces))]
    for piece, score in zip(pieces, scores):
        out.append(struct.pack("fi", score, len(piece)) + piece)
    return b"".join(out)


def check_llama2c(model: GPT, tokenizer, where: str) -> None:
    """ConfigError naming what run.c cannot reproduce, beyond the Llama switches."""
    check_llama(model, where)
    c = model.config
    fixed = {"rope_theta": (c.rope_theta, 10000.0), "norm_eps": (c.norm_eps, 1e-5),
             "head_dim": (c.hs * c.n_head, c.n_embd)}
    for key, (value, wanted) in fixed.items():
        if value != wanted:
            shown = c.hs if key == "head_dim" else value
            raise ConfigError(f"{where}: {key}: {shown!r} differs from run.c's fixed value "
                              f"({'n_embd / n_head' if key == 'head_dim' else wanted})")
    if not isinstance(tokenizer, SentencePieceTokenizer) or tokenizer.bos_id is None or tokenizer.unk_id is None:
        raise ConfigError(f"{where}: tokenizer {tokenizer.name!r} ({tokenizer.kind}) cannot go to llama2.c: run.c "
                          f"needs a SentencePiece text tokenizer with <unk>, <bos> and <eos>")


def export_llama2c(checkpoint: str | Path, out: str | Path) -> Path:
    """A folder run.c samples from: model.bin, tokenizer.bin and tinylm.json (the id permutation)."""
    model, tokenizer, _ = load_model(checkpoint)
    check_llama2c(model, tokenizer, str(checkpoint))
    order = llama2c_vocab_order(tokenizer)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "model.bin").write_bytes(llama2c_model_bytes(model, order))
        (tmp / "tokenizer.bin").write_bytes(llama2c_tokenizer_bytes(tokenizer, order))
        atomic_write_json(tmp / "tinylm.json", {"checkpoint": str(checkpoint), "export_id_to_tinylm_id": order,
                                                "tokenizer": tokenizer.to_dict()})
    return out


EXPORTS = {"hf": export_hf, "llama2c": export_llama2c}


def cli(argv: list[str]) -> int:
    ap = ArgumentParser(prog="tinylm export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt)")
    ap.add_argument("--format", required=True, choices=tuple(EXPORTS))
    ap.add_argument("--out", required=True, help="output folder (must not exist)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        raise DataError(f"{out}: exists; export into a new folder")
    if not Path(args.checkpoint).is_file():
        raise DataError(f"{args.checkpoint}: no such checkpoint")
    written = EXPORTS[args.format](args.checkpoint, out)
    print(f"wrote {written} ({', '.join(sorted(p.name for p in written.iterdir()))})")
    return 0

