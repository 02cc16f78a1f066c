"""Decoding strategies over the decoder (tinylm.decode.decoder): `generate` (greedy, speculative
greedy, sampling; continuous batching of many prompts) and `beam_search`, their settings
(`GenerateConfig`), and the `tinylm generate` command.

Beam search ranks candidates by their log-softmax scores, the one place a token is not the
sampler's choice: it keeps the best `width` continuations, not a single token per row.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import math
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from tinylm.base.args import ArgumentParser
from tinylm.base.config import field_docs
from tinylm.base.errors import ConfigError
from tinylm.decode.decoder import SPECULATE, Decoder
from tinylm.decode.sampling import Sampler, check_sampling
from tinylm.decode.windows import WINDOWS
from tinylm.lang.format import STEP


@dataclass
class GenerateConfig:
    """How to decode; the defaults are the reference evaluator's greedy decoding."""

    max_new_tokens: int = 256
    """Most new tokens per prompt (a per-prompt list is accepted by `generate`)."""
    temperature: float = 0.0
    """0 = greedy (arg-max); otherwise the softmax temperature for sampling."""
    top_k: int | None = None
    """Sample among the k most likely tokens only."""
    top_p: float | None = None
    """Sample within the smallest set of tokens of total probability >= top_p."""
    beam: int = 1
    """Beam width; > 1 runs beam search (then temperature/top-k/top-p are not used)."""
    length_penalty: float = 1.0
    """Beam search ranks finished hypotheses by sum of log-probabilities / length ** length_penalty."""
    window: str = "reference"
    """'reference' (exact reference semantics), 'step-anchored' or 'rolling' (fast); see tinylm.decode.windows."""
    context: int | None = None
    """Tokens the window holds; None: the model's block_size. Longer than block_size (relative
    encodings only) tests length extrapolation: attention distances the model never trained on."""
    seed: int | None = None
    """Seed of the sampler's random stream."""
    stop_at_eos: bool = True
    """Stop a row at the example terminator "\\n\\n"."""
    speculate: int = SPECULATE
    """Greedy only: most draft tokens verified per step (prompt-lookup speculative decoding, exact;
    0 = off); see tinylm.decode.decoder."""

    def validate(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)
        if self.beam < 1:
            raise ConfigError(f"beam must be >= 1, got {self.beam}")
        if self.window not in WINDOWS:
            raise ConfigError(f"window must be one of {list(WINDOWS)}, got {self.window!r}")
        if not math.isfinite(self.length_penalty):
            raise ConfigError(f"length_penalty must be finite, got {self.length_penalty}")
        if not isinstance(self.speculate, int) or self.speculate < 0:
            raise ConfigError(f"speculate must be an integer >= 0, got {self.speculate!r}")
        if self.context is not None and self.context < 2:
            raise ConfigError(f"context must be at least 2 tokens, got {self.context}")


def add_decoding_arguments(ap: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per `GenerateConfig` field not in `skip` (--top-k for top_k), with its default and doc."""
    hints, docs = typing.get_type_hints(GenerateConfig), field_docs(GenerateConfig)
    for f in dataclasses.fields(GenerateConfig):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None -> X
        extra = {"choices": WINDOWS} if f.name == "window" else {}
        if kind is bool:
            extra = {"action": argparse.BooleanOptionalAction}
        else:
            extra["type"] = kind
        doc = docs.get(f.name, "").replace("%", "%%")
        ap.add_argument(flag, default=f.default, help=f"{doc} (default: %(default)s)", **extra)


def decoding_from_args(args: argparse.Namespace, skip: Sequence[str] = ()) -> GenerateConfig:
    """The GenerateConfig the flags of `add_decoding_arguments` gave (defaults where skipped)."""
    return GenerateConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(GenerateConfig)
                             if f.name not in skip})


@dataclass
class Generations:
    """Generated ids per prompt (ending with the terminator when the row stopped there) and costs."""

    ids: list[list[int]]
    positions: int  # token positions the model computed
    steps: int  # decoding steps (forward rounds)
    verified: int = 0  # speculative decoding: row-steps that verified a draft
    drafted: int = 0  # draft tokens they verified
    accepted: int = 0  # draft tokens accepted


def _budgets(max_new_tokens, n: int) -> list[int]:
    if isinstance(max_new_tokens, (int, np.integer)):
        return [int(max_new_tokens)] * n
    budgets = [int(x) for x in max_new_tokens]
    if len(budgets) != n:
        raise ConfigError(f"{len(budgets)} budgets for {n} prompts")
    return budgets


@torch.inference_mode()
def generate(model, prompts: Sequence[Sequence[int]], cfg: GenerateConfig | None = None, *,
             eos_id: int | None = None, step_id: int | None = None, max_new_tokens=None,
             sampler: Sampler | None = None, rows: int | None = None, suppress: Sequence[int] = ()) -> Generations:
    """Decode `prompts`, at most `rows` at a time (default: all in one batch); a finished row takes
    the next waiting prompt. `max_new_tokens` (int or one per prompt) overrides cfg's; no
    generation holds a token of `suppress`."""
    cfg = cfg or GenerateConfig()
    cfg.validate()
    if not prompts:
        raise ConfigError("nothing to decode: no prompts")
    budgets = _budgets(cfg.max_new_tokens if max_new_tokens is None else max_new_tokens, len(prompts))
    eos = eos_id if cfg.stop_at_eos else None
    if cfg.beam > 1:
        return beam_search(model, prompts, budgets, width=cfg.beam, length_penalty=cfg.length_penalty,
                           eos_id=eos, window=cfg.window, step_id=step_id, suppress=suppress, context=cfg.context)
    sampler = sampler or Sampler(cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    speculate = cfg.speculate if sampler.is_greedy else 0
    dec = Decoder(model, window=cfg.window, step_id=step_id, speculate=speculate, suppress=suppress,
                  window_size=cfg.context, sampler=sampler)
    n_rows = min(rows or len(prompts), len(prompts))
    width = max(len(p) + n for p, n in zip(prompts, budgets))
    state = dec.start(prompts[:n_rows], budgets[:n_rows], width=width)
    waiting = list(range(n_rows, len(prompts)))  # continuous batching: finished rows take the next prompts
    out: list[list[int]] = [[] for _ in prompts]
    steps = 0
    while True:
        n_done = int(state.done.sum())
        if n_done and (waiting or n_done == state.batch_size or n_done * 4 >= state.batch_size):
            free = state.done.nonzero().flatten()
            for b in free.tolist():
                if int(state.row[b]) >= 0:
                    out[int(state.row[b])] = state.generated(b)
                    state.row[b] = -1
            if waiting:
                new, waiting = waiting[:len(free)], waiting[len(free):]
                dec.admit(state, free[:len(new)], [prompts[i] for i in new], [budgets[i] for i in new], new)
            elif n_done == state.batch_size:
                break
            else:
                state.keep((~state.done).nonzero().flatten())
            if bool(state.done.all()):
                continue
        dec.step(state, eos)
        steps += 1
    return Generations(out, dec.positions, steps, dec.verified, dec.drafted, dec.accepted)


def beam_search(model, prompts: Sequence[Sequence[int]], budgets: Sequence[int], *, width: int,
                length_penalty: float = 1.0, eos_id: int | None = None, window: str = "reference",
                step_id: int | None = None, suppress: Sequence[int] = (), context: int | None = None) -> Generations:
    """Beam search on log-softmax scores, `width` beams per prompt, all prompts in one batch.

    A candidate ending in eos_id among the top `width` becomes a finished hypothesis scored
    sum(log p) / length ** length_penalty; a prompt finishes with `width` hypotheses or at its
    budget (its live beams then count as hypotheses). Width 1 is greedy decoding.
    """
    P, k = len(prompts), width
    dec = Decoder(model, window=window, step_id=step_id, suppress=suppress, window_size=context)
    state = dec.start([p for p in prompts for _ in range(k)], [b for b in budgets for _ in range(k)])
    scores = torch.full((P, k), float("-inf"), device=dec.device)
    scores[:, 0] = 0.0  # one live beam at first, so that the k beams differ
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(P)]
    active = [budgets[p] > 0 for p in range(P)]
    steps = 0

    def norm(score: float, n: int) -> float:
        return score / max(n, 1) ** length_penalty

    while any(active):
        logp = F.log_softmax(dec.next_logits(state).float(), dim=-1)  # (P*k, V)
        V = logp.size(-1)
        total = (logp + scores.view(-1, 1)).view(P, k * V)
        top, flat = total.topk(min(2 * k, k * V), dim=-1)  # (P, 2k)
        index = torch.arange(P * k, device=dec.device)
        tokens = torch.zeros(P * k, dtype=torch.long, device=dec.device)
        new_scores = scores.clone()
        for p in range(P):
            if not active[p]:
                continue
            chosen = 0
            for rank in range(top.size(1)):
                score, src, tok = float(top[p, rank]), int(flat[p, rank]) // V, int(flat[p, rank]) % V
                if score == float("-inf"):
                    break
                if eos_id is not None and tok == eos_id:
                    if rank < k:
                        ids = state.generated(p * k + src) + [tok]
                        finished[p].append((norm(score, len(ids)), ids))
                    continue
                index[p * k + chosen], tokens[p * k + chosen] = p * k + src, tok
                new_scores[p, chosen] = score
                chosen += 1
                if chosen == k:
                    break
            new_scores[p, chosen:] = float("-inf")
            if len(finished[p]) >= k or chosen == 0:
                active[p] = False
        state.keep(index)
        scores = new_scores
        for p in range(P):
            if not active[p]:
                state.done[p * k:(p + 1) * k] = True
        dec.advance(state, tokens, None)
        steps += 1
        for p in range(P):  # at the budget, the live beams become hypotheses
            if active[p] and bool(state.done[p * k]):
                for j in range(k):
                    if scores[p, j] > float("-inf"):
                        ids = state.generated(p * k + j)
                        finished[p].append((norm(float(scores[p, j]), len(ids)), ids))
                active[p] = False
    out = [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
    return Generations(out, dec.positions, steps)


# -----------------------------------------------------------------------------
# Command line


def decode_escapes(text: str) -> str:
    """Backslash escapes (\\n, \\t, \\\\, \\u00e9) decoded; every other character, non-ASCII
    included, kept as it is."""
    if "\\" not in text:
        return text
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")


def cli(argv: list[str]) -> int:
    """tinylm generate --checkpoint C --prompt TEXT [options]: print the prompt and its continuation.

    With a text tokenizer the prompt is read as the start of a document (after <bos>), and the
    continuation never holds <pad>, <bos> or (unless --allow-unk) <unk>."""
    ap = ArgumentParser(prog="tinylm generate", description=cli.__doc__)
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt)")
    ap.add_argument("--prompt", required=True, help="text to continue (escapes like \\n are decoded)")
    add_decoding_arguments(ap)
    ap.add_argument("--allow-unk", action="store_true", help="let a text tokenizer's <unk> be generated")
    ap.add_argument("--device", default="auto", help="auto: a GPU if there is one, else cpu")
    args = ap.parse_args(argv)

    from tinylm.model.checkpoint import load_model

    cfg = decoding_from_args(args)
    cfg.validate()
    if not args.prompt:
        raise ConfigError("--prompt is empty; give the text to continue")
    model, tokenizer, _ = load_model(args.checkpoint, args.device)
    prompt = decode_escapes(args.prompt)
    ids = tokenizer.encode(prompt, where="--prompt").astype(np.int64).tolist()
    if not ids:
        raise ConfigError(f"--prompt {args.prompt!r} has no tokens in vocabulary {tokenizer.name}")
    if tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id, *ids]
    step_id = step_token_id(tokenizer) if cfg.window == "step-anchored" else None
    result = generate(model, [ids], cfg, eos_id=tokenizer.eos_id, step_id=step_id,
                      suppress=suppressed_ids(tokenizer, allow_unk=args.allow_unk))
    sys.stdout.write(tokenizer.decode(ids + result.ids[0]))
    sys.stdout.write("\n")
    return 0


def suppressed_ids(tokenizer, *, allow_unk: bool = False) -> list[int]:
    """The special tokens a continuation must not hold: <pad>, <bos> and, unless `allow_unk`, <unk>
    (none for the TinyPy tokenizers, which have no such tokens)."""
    ids = [tokenizer.pad_id, tokenizer.bos_id] + ([] if allow_unk else [tokenizer.unk_id])
    return [i for i in ids if i is not None]


def step_token_id(tokenizer) -> int:
    """Id of the "\\n#STEP\\n" token; a tokenizer without one cannot anchor windows on steps."""
    from tinylm.base.errors import TokenizeError

    try:
        return tokenizer.token_id(STEP)
    except TokenizeError:
        raise ConfigError(f"tokenizer {tokenizer.name} has no \"\\n#STEP\\n\" token: "
                          f"use --window reference") from None
