"""The project's checkpoint format: one file, loadable with `torch.load(weights_only=True)`.

A checkpoint is a dict of plain data and tensors:

    {"format": "tinylm-checkpoint-1",
     "model_config": {...GPTConfig fields...},
     "model": state_dict,
     "tokenizer": {...Tokenizer.to_dict()...},
     "tokenizer_sha256": "...",  (its identity, `tinylm.tokens.tokenizer.tokenizer_sha256`)
     "train_state": {...optimizer, scheduler, RNG states, sampler position, step...} (optional),
     "config": {...resolved run config...} (optional),
     "meta": {...git revision, time...}}

Writes are atomic (temporary name, then rename). Loading checks that the tokenizer inside still
has the identity it was saved with; `check_tokenizer` compares it with a dataset's. A checkpoint
saved before identities were recorded is compared by its full tokenizer description, which is
what the identity hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tinylm.base.errors import DataError
from tinylm.base.files import atomic_path, run_metadata
from tinylm.tokens.load import tokenizer_sha256

FORMAT = "tinylm-checkpoint-1"


def save_checkpoint(path: str | Path, *, model_config: dict, model_state: dict, tokenizer: dict,
                    train_state: dict | None = None, config: dict | None = None,
                    meta: dict | None = None, extra: dict | None = None) -> None:
    """Write a checkpoint atomically; `extra`: more top-level entries (e.g. a run's `forget` policy)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model_config": model_config,
        "model": model_state,
        "tokenizer": tokenizer,
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "meta": {**run_metadata(), **(meta or {})},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    if config is not None:
        payload["config"] = config
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; a missing or foreign file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise DataError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(
            f"{path}: not a tinylm checkpoint (for a reference framework state_dict, "
            f"convert it first with `tinylm import-reference`)"
        )
    if not isinstance(ckpt.get("tokenizer"), dict):
        raise DataError(f"{path}: holds no tokenizer description")
    saved, now = ckpt.get("tokenizer_sha256"), tokenizer_sha256(ckpt["tokenizer"])
    if saved is not None and saved != now:
        raise DataError(f"{path}: its tokenizer is not the one it was saved with (tokenizer_sha256 "
                        f"{saved[:12]}..., the tokenizer inside is {now[:12]}...)")
    return ckpt


def check_tokenizer(ckpt: dict, path: str | Path, tokenizer: dict, other: str) -> None:
    """A DataError unless the checkpoint's tokenizer is `tokenizer` (the one `other` uses)."""
    theirs, ours = tokenizer_sha256(ckpt["tokenizer"]), tokenizer_sha256(tokenizer)
    if theirs != ours:
        raise DataError(f"{path}: trained with tokenizer {ckpt['tokenizer'].get('name')!r} ({theirs[:12]}...), "
                        f"but {other} uses {tokenizer.get('name')!r} ({ours[:12]}...)")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode on `device` ('auto': `tinylm.base.runtime.select_device`), tokenizer,
    checkpoint dict) from a checkpoint file."""
    from tinylm.base.config import from_dict
    from tinylm.model.gpt import GPT, GPTConfig
    from tinylm.tokens.load import tokenizer_from_dict

    ckpt = load_checkpoint(path)
    cfg = from_dict(GPTConfig, ckpt["model_config"], where=f"{path} (model_config)")
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise DataError(
            f"{path}: weights do not fit the architecture in its model_config "
            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    if tokenizer.vocab_size > cfg.vocab_size:
        raise DataError(
            f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {cfg.vocab_size}"
        )
    if isinstance(device, str):
        from tinylm.base.runtime import select_device

        device = select_device(device)
    return model.to(device).eval(), tokenizer, ckpt
