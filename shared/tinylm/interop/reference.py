"""Import checkpoints of the reference framework into the project's checkpoint format.

Two reference layouts are understood, told apart by their keys:

- per-head (the demo model and the 2025 models): `blocks.{i}.sa.heads.{h}.{query,key,value}.weight`
  as separate bias-free Linear layers, `sa.proj` with a bias, learned positions in
  `position_embedding_table`;
- fused (the 2026 model): `blocks.{i}.sa.c_attn.weight` laid out [q | k | v], `sa.c_proj`, ALiBi
  slopes in the buffer `sa.m` (1, nh, 1, 1), no position table.

Both have RMSNorm blocks (`ln1`, `ln2`), a SiLU MLP (`ffwd.net.0`, `ffwd.net.2`) without biases,
a final LayerNorm `ln_f` and `lm_head`. Sizes are read off tensor shapes; the block norm type and
the MLP activation cannot be and are those of the reference code.

    tinylm import-reference best-model.pth out.pt [--vocab demo]
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tinylm.base.args import ArgumentParser
from tinylm.base.config import to_dict
from tinylm.base.errors import DataError
from tinylm.model.gpt import GPT, GPTConfig, alibi_slopes

_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")
_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers


def _strip_prefixes(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


class _Taker:
    """Hands out tensors of a state_dict by key, remembering which were never asked for."""

    def __init__(self, sd: dict):
        self.sd, self.rest = sd, set(sd)

    def __contains__(self, key: str) -> bool:
        return key in self.sd

    def __call__(self, key: str) -> torch.Tensor:
        if key not in self.sd:
            raise DataError(f"not a reference model state_dict: missing '{key}'")
        self.rest.discard(key)
        return self.sd[key]


def _count(sd: dict, pattern: str) -> int:
    """Number of consecutive indices i (from 0) for which pattern.format(i) is a key."""
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def convert_reference_state_dict(sd: dict) -> tuple[dict, dict]:
    """(GPTConfig fields, our state_dict) from a reference framework state_dict."""
    if not isinstance(sd, dict):
        raise DataError(f"not a reference model state_dict: got {type(sd).__name__}")
    sd = _strip_prefixes(sd)
    take = _Taker(sd)
    vocab_size, n_embd = take("token_embedding_table.weight").shape
    n_layer = len({int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))})
    fused = "blocks.0.sa.c_attn.weight" in sd
    if not fused and "blocks.0.sa.heads.0.query.weight" not in sd:
        raise DataError(
            "not a reference model state_dict: missing 'blocks.0.sa.heads.0.query.weight' "
            "(per-head layout) or 'blocks.0.sa.c_attn.weight' (fused layout)"
        )
    if fused:
        n_head = take("blocks.0.sa.m").numel()
        head_dim = sd["blocks.0.sa.c_attn.weight"].shape[0] // (3 * n_head)
    else:
        n_head = _count(sd, "blocks.0.sa.heads.{}.query.weight")
        head_dim = sd["blocks.0.sa.heads.0.query.weight"].shape[0]
    hidden = take("blocks.0.ffwd.net.0.weight").shape[0]
    proj = "c_proj" if fused else "proj"

    cfg = dict(
        vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_kv_heads=None,
        head_dim=None if head_dim * n_head == n_embd else head_dim, dropout=0.0, bias=False,
        attn_proj_bias=f"blocks.0.sa.{proj}.bias" in sd, lm_head_bias="lm_head.bias" in sd,
        tie_embeddings=False, norm="rmsnorm", norm_eps=1e-5,
        final_norm="layernorm" if "ln_f.bias" in sd else "layernorm_nobias",
        mlp="silu", mlp_ratio=hidden / n_embd,
    )
    out = {"wte.weight": take("token_embedding_table.weight")}
    if fused:  # ALiBi has no table to read the context from; 512 is the 2026 model's
        cfg.update(pos_encoding="alibi", block_size=512)
    else:
        out["wpe.weight"] = take("position_embedding_table.weight")
        cfg.update(pos_encoding="learned", block_size=out["wpe.weight"].shape[0])

    for i in range(n_layer):
        r = o = f"blocks.{i}."
        if fused:
            slopes = take(r + "sa.m").flatten().float()
            if not torch.allclose(slopes, alibi_slopes(n_head), rtol=1e-5):
                raise DataError(f"'{r}sa.m': ALiBi slopes differ from the standard ones for {n_head} heads")
            out[o + "attn.qkv.weight"] = take(r + "sa.c_attn.weight")
        else:
            # stack the per-head matrices: all query heads, then all key heads, then all value heads
            out[o + "attn.qkv.weight"] = torch.cat([
                take(f"{r}sa.heads.{h}.{part}.weight") for part in ("query", "key", "value")
                for h in range(n_head)
            ])
        out[o + "attn.proj.weight"] = take(f"{r}sa.{proj}.weight")
        if cfg["attn_proj_bias"]:
            out[o + "attn.proj.bias"] = take(f"{r}sa.{proj}.bias")
        out[o + "norm1.weight"] = take(r + "ln1.weight")
        out[o + "norm2.weight"] = take(r + "ln2.weight")
        out[o + "mlp.fc.weight"] = take(r + "ffwd.net.0.weight")
        out[o + "mlp.proj.weight"] = take(r + "ffwd.net.2.weight")
    out["ln_f.weight"] = take("ln_f.weight")
    if "ln_f.bias" in sd:
        out["ln_f.bias"] = take("ln_f.bias")
    out["lm_head.weight"] = take("lm_head.weight")
    if "lm_head.bias" in sd:
        out["lm_head.bias"] = take("lm_head.bias")
    if take.rest:
        raise DataError(f"reference state_dict has tensors this importer does not know: {sorted(take.rest)[:5]}")
    return cfg, {k: v.detach().clone().float() for k, v in out.items()}


def import_reference_checkpoint(path: str | Path) -> tuple[GPT, GPTConfig]:
    """Load a reference `best-model.pth` (a state_dict) into our GPT, in eval mode on CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if isinstance(sd, dict) and "format" in sd and "model" in sd:
        raise DataError(f"{path}: already a tinylm checkpoint, nothing to import")
    try:
        fields, state = convert_reference_state_dict(sd)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    cfg = GPTConfig(**fields)
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"{path}: converted weights do not fit (missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    return model.eval(), cfg


def cli(argv: list[str]) -> int:
    parser = ArgumentParser(prog="tinylm import-reference",
                            description="Convert a reference framework state_dict into a tinylm checkpoint.")
    parser.add_argument("src", help="reference checkpoint, e.g. best-model.pth")
    parser.add_argument("dst", help="tinylm checkpoint to write, e.g. model.pt")
    parser.add_argument("--vocab", default="demo", help="keyword tokenizer vocabulary the model was trained with")
    args = parser.parse_args(argv)

    from tinylm.tokens.tokenizer import keyword_tokenizer

    model, cfg = import_reference_checkpoint(args.src)
    tokenizer = keyword_tokenizer(args.vocab)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise DataError(f"vocabulary '{args.vocab}' has {tokenizer.vocab_size} tokens but the model only "
                        f"{cfg.vocab_size}: pick the --vocab it was trained with")
    from tinylm.model.checkpoint import save_checkpoint

    save_checkpoint(args.dst, model_config=to_dict(cfg), model_state=model.state_dict(),
                    tokenizer=tokenizer.to_dict(),
                    # plain str: torch's TorchVersion type would not pass torch.load(weights_only=True)
                    meta={"imported_from": str(args.src), "torch": str(torch.__version__)})
    print(f"{args.src} -> {args.dst}: {model.num_params():,} parameters, {cfg.n_layer} layers x {cfg.n_embd}, "
          f"{cfg.pos_encoding} positions, vocabulary '{args.vocab}'")
    return 0
