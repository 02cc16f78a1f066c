"""Forgetting runs scored: greedy decoding that forgets, what it saves, and the target loss.

Decoding (`decode`): rows advance one trace step per round. Before each step the policy re-selects
the kept tokens of the row's context (the prompt and the steps so far, its last `block_size -
max_target` tokens, as in training); the kept tokens are prefilled into a fresh KV cache with their
original positions (rows left-padded to a common length) and the step is generated greedily on
them, each new token at the next position, until its step token or the terminator. So attention
runs on b kept + step tokens instead of n + step; the identity policy is the same decoder keeping
everything.

What is measured per suite (`Meter`), beside the scores of `tinylm.evaluate.scoring.score`:

- `kept_ratio`: kept / context tokens, summed over every selection;
- attention FLOPs per generated token, as decoded (`attn_flops_per_token`) and as the whole
  context would cost (`attn_flops_full_per_token`): 4 * n_layer * n_head * head_dim per (query,
  key) pair computed, causal pairs counted (a prefill of m tokens: m(m+1)/2, a token with s keys:
  s), the n^2 against b^2 of the issue;
- `ms_per_token`: decoding wall time per generated token (one process, its torch threads);
- memory: `kv_peak_kib`, the largest KV cache one row held (slots used x layers x 2 x kv heads x
  head_dim x 4 bytes, from the shapes: the same on every machine), and on CUDA also
  `cuda_peak_mib` (torch.cuda.max_memory_allocated over the suite);
- `target_loss`: teacher-forced cross-entropy per target token on every step of every example,
  the policy choosing as in decoding (the training objective, on the suite);
- what the policy keeps (`keep_profile`), on the same teacher-forced contexts where its budget
  drops anything: the share of the previous step kept (the prompt, before the first step), the
  share of the kept tokens among the most recent k, and a learned scorer's mean correlation of
  score with position (negative: it prefers older tokens).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.base.files import atomic_write_json, atomic_write_text, run_metadata
from tinylm.data.batches import IGNORE, TokenSplit, example_starts, offsets_after
from tinylm.decode.sampling import greedy
from tinylm.evaluate.scoring import generated_text, read_suite, score, suite_paths, summarize
from tinylm.lang.format import EXAMPLE_END
from tinylm.model.gpt import lm_loss
from tinylm.studies.forget import LEARNED, ForgetLM, load_forget_model, row_seeds, step_windows

SLACK = 16  # tokens a row may generate past its target's length, as tinylm.evaluate.scoring allows


@dataclass
class Meter:
    context_tokens: int = 0
    kept_tokens: int = 0
    pairs: int = 0       # (query, key) pairs attended, per layer and head
    pairs_full: int = 0  # the same had every context token been kept
    generated: int = 0
    seconds: float = 0.0
    kv_slots_peak: int = 0

    def summary(self, lm: ForgetLM) -> dict:
        c = lm.config
        per_pair = 4 * c.n_layer * c.n_head * c.hs
        per_slot = c.n_layer * 2 * c.kv_heads * c.hs * 4
        tokens = max(self.generated, 1)
        return {"kept_ratio": self.kept_tokens / max(self.context_tokens, 1),
                "attn_flops_per_token": per_pair * self.pairs / tokens,
                "attn_flops_full_per_token": per_pair * self.pairs_full / tokens,
                "ms_per_token": 1000 * self.seconds / tokens, "kv_peak_kib": per_slot * self.kv_slots_peak / 1024,
                "generated_tokens": self.generated}


def _select(lm: ForgetLM, contexts: list[list[int]], device, seeds: torch.Tensor) -> list[list[int]]:
    """The kept positions of each context (a row's window: position 0 = its first token)."""
    n = torch.tensor([len(c) for c in contexts])
    x = torch.full((len(contexts), int(n.max())), lm.policy.ids.step_id, dtype=torch.long)
    for r, c in enumerate(contexts):
        x[r, :len(c)] = torch.tensor(c)
    keep = lm.select(x.to(device), n.to(device), seeds)[0].cpu()
    return [row.nonzero().flatten().tolist() for row in keep]


@torch.no_grad()
def decode(lm: ForgetLM, prompts: list[list[int]], budgets: list[int], eos_id: int, meter: Meter,
           keys: list[int], seed: int = 0) -> list[list[int]]:
    """Greedy generations of every prompt (see the module docstring); `meter` adds what they cost.
    A random policy's choice before step s of prompt i is seeded by (seed, keys[i], s) alone."""
    device, step_id = lm.gpt.wte.weight.device, lm.policy.ids.step_id
    max_ctx, max_step = lm.config.block_size - lm.cfg.max_target, lm.cfg.max_target
    seqs, gen = [list(p) for p in prompts], [[] for _ in prompts]
    live = list(range(len(prompts)))
    steps = [0] * len(prompts)
    tick = time.time()
    while live:
        contexts = [seqs[b][-max_ctx:] for b in live]
        kept = _select(lm, contexts, device, row_seeds((seed, keys[b], steps[b]) for b in live))
        for b in live:
            steps[b] += 1
        K = max(len(k) for k in kept)
        room = [min(max_step, budgets[b] - len(gen[b])) for b in live]
        cache = lm.gpt.new_cache(len(live), K + max(room))
        x = torch.zeros(len(live), K, dtype=torch.long)
        pos = torch.zeros(len(live), K, dtype=torch.long)
        for r, (c, k) in enumerate(zip(contexts, kept)):
            x[r, K - len(k):] = torch.tensor([c[i] for i in k])
            pos[r, K - len(k):] = torch.tensor(k)
            cache.pad[r] = K - len(k)
        logits, _ = lm.gpt(x.to(device), positions=pos.to(device), cache=cache, last=True)
        active = [True] * len(live)
        for c, k in zip(contexts, kept):
            meter.context_tokens += len(c)
            meter.kept_tokens += len(k)
            meter.pairs += len(k) * (len(k) + 1) // 2
            meter.pairs_full += len(c) * (len(c) + 1) // 2
        j = 0
        while True:
            tok = greedy(logits[:, -1]).cpu()
            for r, b in enumerate(live):
                if not active[r]:
                    continue
                t = int(tok[r])
                seqs[b].append(t)
                gen[b].append(t)
                meter.generated += 1
                meter.kv_slots_peak = max(meter.kv_slots_peak, len(kept[r]) + j + 1)
                if t in (step_id, eos_id) or len(gen[b]) >= budgets[b] or j + 1 >= room[r]:
                    active[r] = False
                else:  # the next token attends to the kept context and the step so far
                    meter.pairs += len(kept[r]) + j + 2
                    meter.pairs_full += len(contexts[r]) + j + 2
            if not any(active):
                break
            step_pos = torch.tensor([[len(c) + j] for c in contexts], device=device)
            logits, _ = lm.gpt(tok[:, None].to(device), positions=step_pos, cache=cache, last=True)
            j += 1
        live = [b for b in live if gen[b][-1] != eos_id and len(gen[b]) < budgets[b]]
    meter.seconds += time.time() - tick
    return gen


def step_batches(lm: ForgetLM, examples, eos_id: int, batch_size: int, seed: int = 0):
    """The teacher-forced contexts of every step of every example, batch by batch: (x, y, n_ctx,
    t_len) on the model's device and their noise seeds, each seeded by (seed, its step's index)."""
    tokens = np.concatenate([np.array(e.prompt_ids + e.target_ids + [eos_id], dtype=np.int64) for e in examples])
    split = TokenSplit(tokens=tokens, starts=example_starts(tokens, eos_id))
    step_id = lm.policy.ids.step_id
    after = offsets_after(tokens, step_id)
    device = lm.gpt.wte.weight.device
    for lo in range(0, len(after), batch_size):
        rows = after[lo:lo + batch_size]
        batch = step_windows(split, rows, lm.config.block_size, lm.cfg.max_target, eos_id, step_id)
        yield [t.to(device) for t in batch], row_seeds((seed, i) for i in range(lo, lo + len(rows)))


@torch.no_grad()
def target_loss(lm: ForgetLM, examples, eos_id: int, batch_size: int, seed: int = 0) -> float:
    """Teacher-forced loss per target token over every step of every example (see the module docstring)."""
    total, counted = 0.0, 0
    for batch, seeds in step_batches(lm, examples, eos_id, batch_size, seed):
        logits, labels, _, _ = lm(*batch, seeds)
        total += float(lm_loss(logits, labels))
        counted += int((labels != IGNORE).sum())
    return total / max(counted, 1)


@torch.no_grad()
def keep_profile(lm: ForgetLM, examples, eos_id: int, batch_size: int, seed: int = 0) -> dict:
    """What the policy keeps of the teacher-forced contexts of `target_loss` (see the module docstring)."""
    step_id = lm.policy.ids.step_id
    previous, recent, corr, windows, dropping = [], [], [], 0, 0
    for (x, _, n_ctx, _), seeds in step_batches(lm, examples, eos_id, batch_size, seed):
        keep = lm.select(x, n_ctx, seeds)[0].cpu()
        scores = lm.policy(x, lm.gpt.wte(x), None).cpu() if lm.cfg.policy in LEARNED else None
        x, n_ctx = x.cpu(), n_ctx.cpu()
        windows += len(x)
        for b in range(len(x)):
            n, k = int(n_ctx[b]), int(keep[b].sum())
            if k >= n:
                continue
            dropping += 1
            steps_at = (x[b, :n - 1] == step_id).nonzero().flatten()
            start = int(steps_at[-1]) + 1 if len(steps_at) else 0
            previous.append(float(keep[b, start:n].float().mean()))
            recent.append(float(keep[b, n - k:n].sum()) / k)
            if scores is not None:
                s, pos = scores[b, :n].to("cpu", torch.float64), torch.arange(n, dtype=torch.float64)  # MPS: no float64
                corr.append(float(torch.corrcoef(torch.stack([s, pos]))[0, 1]))
    means = [float(np.mean(v)) if v else None for v in (previous, recent, corr)]
    return {"dropping_share": dropping / max(windows, 1),
            **dict(zip(("previous_step_kept", "recent_kept", "score_position_corr"), means))}


def variant(cfg) -> str:
    """A policy's name in tables and plots: the policy, and how a learned one was trained when not the
    default (the estimator, a frozen LM, a temperature that falls over the run)."""
    if cfg.policy not in LEARNED:
        return cfg.policy
    return (cfg.policy + ("" if cfg.estimator == "straight_through" else f"-{cfg.estimator}") + ("-frozen" if cfg.freeze_lm else "")
            + ("-annealed" if cfg.temperature[1] < cfg.temperature[0] else ""))


def decode_suite(lm: ForgetLM, examples, eos_id: int, batch_size: int, meter: Meter):
    """`decode` over a suite's examples, longest targets first, batch_size at a time, each allowed its
    target's length + SLACK: yields (examples, their generations) batch by batch."""
    order = sorted(examples, key=lambda e: (-len(e.target_ids), e.id))
    for lo in range(0, len(order), batch_size):
        batch = order[lo:lo + batch_size]
        yield batch, decode(lm, [e.prompt_ids for e in batch], [len(e.target_ids) + SLACK for e in batch], eos_id,
                            meter, keys=[e.id for e in batch])


def evaluate_suite(lm: ForgetLM, tokenizer, name: str, path: Path, out_dir: Path, limit: int | None,
                   batch_size: int, settings: dict, log=print) -> dict:
    """Decode and score one suite into out_dir (results.jsonl, summary.json); returns the summary."""
    eos = tokenizer.eos_id
    examples = read_suite(path, tokenizer, limit)
    meter, records = Meter(), []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for batch, gens in decode_suite(lm, examples, eos, batch_size, meter):
        for e, g in zip(batch, gens):
            text = generated_text(tokenizer, g)
            records.append({"id": e.id, "prompt": e.prompt, "target": e.target,
                            "generated": text.split(EXAMPLE_END)[0],
                            **score(tokenizer.decode(e.target_ids), text)})
        log(f"{name}: {len(records)}/{len(examples)} examples, hard "
            f"{100 * sum(r['class'] == 'hard' for r in records) / len(records):.1f}%")
    records.sort(key=lambda r: r["id"])
    timing = [{"wall_s": meter.seconds, "generated_tokens": meter.generated, "positions": meter.pairs,
               "processes": 1}]
    summary = summarize(name, path, records, timing, settings)
    summary["forget"] = {"variant": variant(lm.cfg), "policy": lm.cfg.policy,
                         "keep_ratio": 1.0 if lm.cfg.policy == "identity" else lm.cfg.keep_ratio,
                         **meter.summary(lm),
                         "target_loss": target_loss(lm, examples, eos, batch_size),
                         **keep_profile(lm, examples, eos, batch_size)}
    if torch.cuda.is_available():
        summary["forget"]["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    atomic_write_text(out_dir / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def evaluate_checkpoint(checkpoint: str | Path, suites: list[str], out_dir: str | Path, limit: int | None = None,
                        batch_size: int = 64, device: str = "cpu", log=print) -> dict:
    """Every suite of a forgetting run's checkpoint into OUT/<suite>/, gathered in OUT/summary.json
    (the layout of tinylm.evaluate.scoring, so reports read both); a suite already scored is read back."""
    from tinylm.evaluate.scoring import checkpoint_info
    from tinylm.report.tables import suites_table

    named = suite_paths(suites)
    out_dir = Path(out_dir)
    lm, tokenizer, ckpt = load_forget_model(checkpoint, device)
    info = checkpoint_info(checkpoint, ckpt)
    summaries = []
    for name, path in named:
        settings = {"suite": str(path), "limit": limit, "batch_size": batch_size, "decoder": "forget", **info}
        done = out_dir / name / "summary.json"
        if done.is_file() and json.loads(done.read_text())["settings"] == settings:
            summaries.append(json.loads(done.read_text()))
            continue
        summaries.append(evaluate_suite(lm, tokenizer, name, path, out_dir / name, limit, batch_size, settings, log))
    combined = {**info, "suites": summaries, "meta": run_metadata()}
    atomic_write_json(out_dir / "summary.json", combined)
    atomic_write_text(out_dir / "table.md", suites_table(summaries) + "\n")
    return combined
