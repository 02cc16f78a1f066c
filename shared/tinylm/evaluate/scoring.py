"""Generations -> scores: TinyPy code-tracing evaluation of a checkpoint on test suites.

An example is a program followed by its trace. The prompt is the example up to and including the
first "#STEP" line; the target is the rest. The model continues the prompt (greedy by default,
reference window semantics, see `tinylm.decode.windows`) and each example gets one class, as in the
reference evaluator. Scoring compares decoded text, never token ids: the generation is decoded
(cut at the terminator token, or at the first "\\n\\n" of its text) and compared with the target
as the tokenizer decodes it (the target itself for the learned tokenizers, which keep every
character; with TinyPy's canonical spaces for the keyword ones). So a generation scores the same
whatever tokenizer wrote it, keyword, char, BPE or unigram:

- hard: the cut generation equals the target;
- soft: not hard, but the last line (the final state) of the cut generation equals the target's
  (after stripping surrounding whitespace);
- failure: anything else. A trace that is right but does not stop is a failure unless its last
  generated line happens to be the final state; `stopped` and the step metrics show such cases.

Extra metrics per example: `steps_correct` / `steps_total` (trace steps, split at "\\n#STEP\\n",
equal position by position), `first_wrong_step` (None when all are right), and `output_correct`
for traces that record printed output (m2 format: the final state line ends with "|" and the
output); None when the target has none. A suite's summary also splits hard match by statement
kind (`by_statement`: the programs with a `while`, those without, and so on) and counts the examples not
matched exactly by where they first go wrong (`failure_kinds`, see `tinylm.evaluate.failures`). `n_target_tokens` and `n_generated_tokens` count the
tokenizer's tokens (the cost of an example, not part of its score).

Budget: each row may generate its target's length + `slack` tokens and stops at the terminator.
The reference gave every row of a batch the longest target of the batch + 5 (2025) or + 16 (2026);
a per-row budget makes the scores independent of batching.

Files, per suite, in OUT/<suite>/: `settings.json`; `progress.jsonl`, the finished examples batch
by batch (append-only: a killed run resumes with the batches it had not finished and ends with
the same files); `timing.jsonl`; then, written atomically at the end,
`results.jsonl` and `results.csv` (one row per example, in file order) and `summary.json`
(counts, percentages, tokens/s, wall time: the batches' seconds, each divided by the number
of processes that decoded side by side). With several suites, OUT/summary.json and
OUT/table.md gather them; a sweep (`--sweep RUN_DIR`) evaluates every ckpt_*.pt of a run folder
into OUT/<checkpoint>/ and writes OUT/sweep.json and OUT/sweep.md.

Processes. Under torchrun the processes (one per GPU, or on a CPU one per core, one thread each)
share each suite's batches: rank 0 reads what earlier runs finished and deals out the rest,
costliest first to the least loaded process (`share_batches`, with `decode_cost`); at the end
it gathers the records and writes the files. A batch decodes the same whichever process takes
it (its rows and its sampling seed depend on the batch alone), so the results do not depend on
the number of processes, and a run killed under one number resumes under another. Rank r > 0
appends to progress.rank{r}.jsonl and timing.rank{r}.jsonl. Small batches share out evenly: a
batch of the longest targets can hold most of the work, so `--batch-size 32` suits a few
processes.

    tinylm eval --checkpoint runs/cpu/best.pt --suite datasets/demo/test.txt --out evals/cpu
    tinylm eval --sweep runs/cpu --suite datasets/demo/test.txt --suite ood=datasets/x/test.txt --out evals/sweep
    torchrun --standalone --nproc_per_node 2 -m tinylm.cli eval --checkpoint runs/cpu/best.pt \\
        --suite datasets/demo/test.txt --batch-size 32 --out evals/cpu
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from tinylm.base import runtime
from tinylm.base.errors import ConfigError, DataError, TokenizeError
from tinylm.base.files import atomic_write_json, atomic_write_text, run_metadata
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.decode.windows import check_window
from tinylm.evaluate.failures import failure_kinds
from tinylm.lang.format import EXAMPLE_END, PROMPT_END, STEP, split_examples

CLASSES = ("hard", "soft", "failure")


# -----------------------------------------------------------------------------
# Scoring one example


def split_example(text: str) -> tuple[str, str]:
    """(prompt, target): the prompt ends with the first "#STEP\\n"; a DataError if there is none."""
    at = text.find(PROMPT_END)
    if at < 0:
        raise DataError("example has no #STEP line, so no prompt/target split")
    return text[:at + len(PROMPT_END)], text[at + len(PROMPT_END):]


def _last_line(text: str) -> str:
    return text.strip().split("\n")[-1]


def _output(text: str) -> str | None:
    """The text after the last "|" of the last line (m2 printed output), or None without one."""
    line = text.split("\n")[-1]
    return line[line.rindex("|") + 1:] if "|" in line else None


def score(target: str, generated: str) -> dict:
    """Class and metrics of one generation, from text alone: the target, and the generated text
    with the terminator "\\n\\n" where the model stopped (whatever follows it is cut)."""
    stopped = EXAMPLE_END in generated
    cut = generated[:generated.index(EXAMPLE_END)] if stopped else generated
    if cut == target:
        cls = "hard"
    elif _last_line(cut) == _last_line(target):
        cls = "soft"
    else:
        cls = "failure"
    t_steps, g_steps = target.split(STEP), cut.split(STEP)
    right = [i < len(g_steps) and g_steps[i] == s for i, s in enumerate(t_steps)]
    target_out = _output(target)
    return {
        "class": cls,
        "stopped": stopped,
        "steps_total": len(t_steps),
        "steps_correct": sum(right),
        "steps_correct_frac": sum(right) / len(t_steps),
        "first_wrong_step": right.index(False) if False in right else None,
        "output_correct": None if target_out is None else _output(cut) == target_out,
    }


def generated_text(tokenizer, ids: list[int]) -> str:
    """The text of generated ids, ending with the terminator "\\n\\n" when the model wrote the
    terminator token (its text is cut there)."""
    eos = tokenizer.eos_id
    if eos in ids:
        return tokenizer.decode(ids[:ids.index(eos)]) + EXAMPLE_END
    return tokenizer.decode(ids)


# -----------------------------------------------------------------------------
# Test suites


@dataclass
class Example:
    id: int
    prompt: str
    target: str
    prompt_ids: list[int]
    target_ids: list[int]


def read_suite(path: str | Path, tokenizer, limit: int | None = None) -> list[Example]:
    """The examples of a test file (separated by blank lines), split and tokenized."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such test file")
    pieces = split_examples(path.read_text())
    if not pieces:
        raise DataError(f"{path}: no examples (empty test file)")
    if limit is not None:
        pieces = pieces[:limit]
    examples = []
    for i, piece in enumerate(pieces):
        try:
            prompt, target = split_example(piece)
        except DataError as exc:
            raise DataError(f"{path}, example {i}: {exc}") from None
        if not target:
            raise DataError(f"{path}, example {i}: empty target after the first #STEP line")
        try:
            p_ids = tokenizer.encode(prompt, where=f"{path}, example {i} (prompt)")
            t_ids = tokenizer.encode(target, where=f"{path}, example {i} (target)")
        except TokenizeError as exc:
            raise DataError(f"{exc} (does the checkpoint's tokenizer fit this test suite?)") from None
        examples.append(Example(i, prompt, target, p_ids.astype(np.int64).tolist(), t_ids.astype(np.int64).tolist()))
    return examples


def suite_name(spec: str) -> tuple[str, Path]:
    """'NAME=PATH' or 'PATH' (named '<folder>-<stem>', e.g. demo-test)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name, Path(path)
    path = Path(spec)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem, path


def suite_paths(suites: list[str]) -> list[tuple[str, Path]]:
    """(name, path) of each '[NAME=]PATH'; none, a name twice or a missing file is an error, found
    before any work."""
    if not suites:
        raise ConfigError("no test suite given (--suite PATH, repeatable)")
    named = [suite_name(spec) for spec in suites]
    names = [name for name, _ in named]
    twice = [name for i, name in enumerate(names) if name in names[:i]]
    if twice:
        raise ConfigError(f"two suites are named {twice[0]!r}; name them apart with --suite NAME=PATH")
    for name, path in named:
        if not path.is_file():
            raise DataError(f"{path}: no such test file (suite {name})")
    return named


# -----------------------------------------------------------------------------
# Evaluating one suite, resumably


UNREAD_DECODING = ("max_new_tokens", "stop_at_eos")  # GenerateConfig fields an evaluation does not read


@dataclass
class EvalConfig:
    """Settings of an evaluation; all of them are recorded in settings.json and checked on resume."""

    batch_size: int = 128
    """Examples decoded together (rows of one batch)."""
    limit: int | None = None
    """Evaluate only the first `limit` examples of each suite."""
    slack: int = 16
    """Each row may generate its target's token count + slack tokens."""
    decoding: GenerateConfig = field(default_factory=GenerateConfig)
    """How the batches are decoded (tinylm.decode.strategies); its max_new_tokens is not read (each
    row's budget is its target's length + slack), and batch i samples with seed (None: 0) + i, so
    that a resumed evaluation draws the same tokens."""

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.slack < 1:
            raise ConfigError(f"slack must be >= 1 (room for the terminator), got {self.slack}")
        if not self.decoding.stop_at_eos:
            raise ConfigError("decoding.stop_at_eos must stay true: a trace is scored up to its terminator")
        self.decoding.validate()

    def generate_config(self, batch: int) -> GenerateConfig:
        """The decoding of batch `batch`."""
        return replace(self.decoding, seed=(self.decoding.seed or 0) + batch)


def _log_paths(out_dir: Path, rank: int) -> tuple[Path, Path]:
    """This process's progress and timing files: rank 0 (or a single process) writes
    progress.jsonl and timing.jsonl, rank r of a torchrun evaluation progress.rank{r}.jsonl, ..."""
    suffix = "" if rank == 0 else f".rank{rank}"
    return out_dir / f"progress{suffix}.jsonl", out_dir / f"timing{suffix}.jsonl"


def _read_progress(path: Path, batches: list[list[int]]) -> tuple[dict[int, list[dict]], int]:
    """The complete batches of one progress file (batch -> its records) and the bytes they fill.

    A file holds whole batches, each appended at once, then at most a torn or unfinished tail."""
    if not path.exists():
        return {}, 0
    done, group, pos, good = {}, [], 0, 0
    for n, line in enumerate(path.read_bytes().split(b"\n")[:-1]):  # after the last newline: empty or torn
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        b = rec.get("batch")
        if group and b != group[0]["batch"]:
            break  # the batch before was never finished: nothing after it is trusted
        if not (isinstance(b, int) and 0 <= b < len(batches)) or rec.get("id") != batches[b][len(group)]:
            raise DataError(f"{path}: line {n + 1} is not the expected example; delete the folder to start over")
        group.append(rec)
        pos += len(line) + 1
        if len(group) == len(batches[b]):
            done[b], group, good = group, [], pos
    return done, good


def _read_timing(paths) -> dict[int, dict]:
    """batch -> its timing line, from every process's timing file."""
    timing = {}
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                t = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            timing[t["batch"]] = t
    return timing


def _finished(out_dir: Path, batches: list[list[int]]) -> tuple[dict[int, list[dict]], dict[int, dict]]:
    """The batches earlier runs finished, in any process's progress file (batch -> records), and
    the timing lines of every process."""
    done = {}
    for path in sorted(out_dir.glob("progress*.jsonl")):
        for b, recs in _read_progress(path, batches)[0].items():
            done.setdefault(b, recs)
    return done, _read_timing(sorted(out_dir.glob("timing*.jsonl")))


def decode_cost(prompt_len: int, new_tokens: int, window: str, W: int) -> int:
    """Token positions the model runs to prefill a prompt and decode `new_tokens` after it: one
    per token, and in reference mode W for each token predicted from a full window (a row of
    length L > W, see `tinylm.decode.windows`)."""
    past = max(0, prompt_len + new_tokens - 1 - max(prompt_len - 1, W)) if window == "reference" else 0
    return prompt_len + new_tokens + (W - 1) * past


def share_batches(costs: dict[int, int], processes: int) -> list[list[int]]:
    """Batches -> one list per process: costliest first, each to the least loaded process."""
    plan, loads = [[] for _ in range(processes)], [0] * processes
    for b in sorted(costs, key=lambda b: (-costs[b], b)):
        r = min(range(processes), key=lambda r: (loads[r], r))
        plan[r].append(b)
        loads[r] += costs[b]
    return plan


def _append_lines(path: Path, lines: list[str]) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


def _csv_text(records: list[dict]) -> str:
    fields = ["id", "class", "stopped", "steps_total", "steps_correct", "steps_correct_frac", "first_wrong_step",
              "output_correct", "n_target_tokens", "n_generated_tokens", "prompt", "target", "generated"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


SWEEP_KEYS = ("n", "hard", "hard_pct", "soft_pct", "failure_pct", "steps_correct_frac_mean", "steps_correct_frac_std",
              "by_statement")
"""What a sweep row keeps of each suite's summary."""


STATEMENTS = ("while", "for", "if", "elif", "else", "print")
_STATEMENT_LINE = re.compile(r"^\s*(" + "|".join(STATEMENTS) + r")\b", re.MULTILINE)


def scores(records: list[dict]) -> dict:
    """The scores of a set of scored examples: counts and percentages of each class, the fraction of
    trace steps right (mean and standard deviation), stopped and printed-output percentages."""
    n = len(records)
    counts = {c: sum(r["class"] == c for r in records) for c in CLASSES}
    outputs = [r["output_correct"] for r in records if r["output_correct"] is not None]
    mean_steps = sum(r["steps_correct_frac"] for r in records) / n
    return {
        "n": n,
        **counts,
        **{f"{c}_pct": 100.0 * counts[c] / n for c in CLASSES},
        "steps_correct_frac_mean": mean_steps,
        "steps_correct_frac_std": math.sqrt(sum((r["steps_correct_frac"] - mean_steps) ** 2 for r in records)
                                            / max(n - 1, 1)),
        "stopped_pct": 100.0 * sum(r["stopped"] for r in records) / n,
        "output_correct_pct": 100.0 * sum(outputs) / len(outputs) if outputs else None,
    }


def by_statement(records: list[dict]) -> dict[str, dict]:
    """The scores of the programs that hold each statement kind and of those that do not ("while" and
    "no while", ...), for every kind that some but not all programs hold: where a suite's errors
    sit, for example among the in-distribution programs with a loop."""
    kinds = [set(_STATEMENT_LINE.findall(r["prompt"])) for r in records]
    out = {}
    for kind in STATEMENTS:
        with_kind = [r for r, k in zip(records, kinds) if kind in k]
        if 0 < len(with_kind) < len(records):
            out[kind] = scores(with_kind)
            out[f"no {kind}"] = scores([r for r, k in zip(records, kinds) if kind not in k])
    return out


def summarize(name: str, path: Path, records: list[dict], timing: list[dict], settings: dict) -> dict:
    wall = sum(t["wall_s"] / t["processes"] for t in timing)  # processes decode batches side by side
    generated = sum(t["generated_tokens"] for t in timing)
    return {
        "suite": name,
        "path": str(path),
        **scores(records),
        "by_statement": by_statement(records),
        "failure_kinds": failure_kinds(records),
        "settings": settings,
        "timing": {
            "wall_s": wall,
            "generated_tokens": generated,
            "tokens_per_s": generated / wall if wall else None,
            "examples_per_s": len(records) / wall if wall else None,
            "positions": sum(t["positions"] for t in timing),
            "batches_run": len(timing),
        },
    }


def evaluate_suite(model, tokenizer, suite: str | Path, out_dir: str | Path, cfg: EvalConfig | None = None, *,
                   name: str | None = None, checkpoint: dict | None = None, log=print, rt=None) -> dict:
    """Evaluate `model` on one test file into `out_dir`, resuming what a previous run left there.

    `rt`: a `tinylm.base.runtime.Runtime`; under torchrun its processes share the batches and every
    one of them returns the summary."""
    cfg = cfg or EvalConfig()
    cfg.validate()
    suite, out_dir = Path(suite), Path(out_dir)
    name = name or suite_name(str(suite))[0]
    rt = rt or runtime.Runtime(device=model.wte.weight.device, dtype=torch.float32)  # one process
    rank, processes = rt.rank, rt.world_size
    eos = tokenizer.eos_id
    if eos is None:
        raise DataError(f"tokenizer {tokenizer.name} has no \"\\n\\n\" terminator token; cannot score traces")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise DataError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
                        f"{model.config.vocab_size}: checkpoint and tokenizer do not match")
    check_window(model, cfg.decoding.window)
    step_id = None
    if cfg.decoding.window == "step-anchored":
        from tinylm.decode.strategies import step_token_id
        step_id = step_token_id(tokenizer)
    examples = read_suite(suite, tokenizer, cfg.limit)
    by_id = {e.id: e for e in examples}
    # longest targets first, so that the rows of a batch finish together
    order = [e.id for e in sorted(examples, key=lambda e: (-len(e.target_ids), e.id))]
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]

    settings = {"suite": str(suite), "suite_sha256": hashlib.sha256(suite.read_bytes()).hexdigest(),
                "n_examples": len(examples), "tokenizer": tokenizer.name, **(checkpoint or {}),
                **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "decoding"},
                **{k: v for k, v in dataclasses.asdict(cfg.decoding).items() if k not in UNREAD_DECODING}}
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ConfigError(f"{out_dir} holds an evaluation with other settings ({', '.join(diff)}); "
                              f"use another --out folder or delete it")
    elif rank == 0:
        atomic_write_json(settings_path, settings)

    done, timing, plan = {}, {}, None
    if rank == 0:  # reads every process's files before any of them writes
        done, timing = _finished(out_dir, batches)
        W = cfg.decoding.context or model.config.block_size
        costs = {b: sum(decode_cost(len(by_id[i].prompt_ids), len(by_id[i].target_ids) + cfg.slack, cfg.decoding.window, W)
                        for i in ids) for b, ids in enumerate(batches) if b not in done}
        plan = share_batches(costs, processes)
        if done:
            log(f"{name}: resuming after {sum(map(len, done.values()))} of {len(order)} examples")
    plan = rt.broadcast_object(plan)
    progress, timing_path = _log_paths(out_dir, rank)
    good = _read_progress(progress, batches)[1]
    if progress.exists() and progress.stat().st_size != good:
        with open(progress, "r+b") as f:  # cut a torn or unfinished batch
            f.truncate(good)

    tag = f"[{rank + 1}/{processes}] " if processes > 1 else ""
    mine, mine_timing = [], []
    from tqdm import tqdm

    mine_total = sum(len(batches[b]) for b in plan[rank])
    # a bar with ETA on a terminal (the main process's); a line per batch in logs
    bar = tqdm(total=mine_total, desc=f"{tag}{name}", unit="ex", leave=False, dynamic_ncols=True,
               disable=None if rank == 0 else True)
    for batch in plan[rank]:
        ids = batches[batch]
        tick = time.time()
        result = generate(model, [by_id[i].prompt_ids for i in ids], cfg.generate_config(batch), eos_id=eos,
                          step_id=step_id, max_new_tokens=[len(by_id[i].target_ids) + cfg.slack for i in ids])
        wall = time.time() - tick
        lines = []
        for i, gen in zip(ids, result.ids):
            ex = by_id[i]
            text = generated_text(tokenizer, gen)
            rec = {"id": i, "batch": batch, "prompt": ex.prompt, "target": ex.target,
                   "generated": text.split(EXAMPLE_END)[0],
                   **score(tokenizer.decode(ex.target_ids), text),
                   "n_target_tokens": len(ex.target_ids), "n_generated_tokens": len(gen)}
            mine.append(rec)
            lines.append(json.dumps(rec))
        _append_lines(progress, lines)
        t = {"batch": batch, "wall_s": wall, "generated_tokens": sum(len(g) for g in result.ids),
             "positions": result.positions, "processes": processes}
        mine_timing.append(t)
        _append_lines(timing_path, [json.dumps(t)])
        hard = sum(r["class"] == "hard" for r in mine)
        tokens_per_s = t["generated_tokens"] / max(wall, 1e-9)
        bar.update(len(ids))
        bar.set_postfix(hard=f"{100 * hard / len(mine):.1f}%", tok_s=f"{tokens_per_s:.0f}", refresh=False)
        if bar.disable:
            log(f"{tag}{name}: {len(mine)}/{mine_total} examples, hard {100 * hard / len(mine):.1f}%, "
                f"{tokens_per_s:.0f} tokens/s")
    bar.close()

    gathered = rt.gather_objects((mine, mine_timing))
    summary = None
    if rank == 0:
        records = [r for recs in done.values() for r in recs] + [r for recs, _ in gathered for r in recs]
        timing.update({t["batch"]: t for _, ts in gathered for t in ts})
        final = sorted(records, key=lambda r: r["id"])
        atomic_write_text(out_dir / "results.jsonl", "".join(json.dumps(r) + "\n" for r in final))
        atomic_write_text(out_dir / "results.csv", _csv_text(final))
        finished = {r["batch"] for r in final}
        summary = summarize(name, suite, final, [timing[b] for b in sorted(timing) if b in finished], settings)
        atomic_write_json(out_dir / "summary.json", summary)
    return rt.broadcast_object(summary)


# -----------------------------------------------------------------------------
# Checkpoints and sweeps


def checkpoint_info(path: str | Path, ckpt: dict) -> dict:
    """What identifies a checkpoint in settings and tables: path, hash, training step."""
    path = Path(path)
    state = ckpt.get("train_state") or {}
    return {"checkpoint": str(path), "checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "step": state.get("step")}


def evaluate_checkpoint(checkpoint: str | Path, suites: list[str], out_dir: str | Path,
                        cfg: EvalConfig | None = None, device: str = "cpu", log=print, rt=None) -> dict:
    """Evaluate one checkpoint on several suites; OUT/summary.json and OUT/table.md gather them.

    `rt` (torchrun): its processes share each suite's batches; its device wins over `device`."""
    from tinylm.model.checkpoint import load_model
    from tinylm.report.tables import suites_table

    named = suite_paths(suites)
    out_dir = Path(out_dir)
    model, tokenizer, ckpt = load_model(checkpoint, rt.device if rt else device)
    info = checkpoint_info(checkpoint, ckpt)
    summaries = [evaluate_suite(model, tokenizer, path, out_dir / name, cfg, name=name, checkpoint=info,
                                log=log, rt=rt) for name, path in named]
    combined = {**info, "suites": summaries, "meta": run_metadata()}
    if not rt or rt.is_main:
        atomic_write_json(out_dir / "summary.json", combined)
        atomic_write_text(out_dir / "table.md", suites_table(summaries) + "\n")
    return combined


def training_times(run_dir: Path) -> dict[int, float]:
    """step -> elapsed seconds, from the run's metrics.jsonl (empty when absent)."""
    times: dict[int, float] = {}
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "elapsed_s" in rec and "step" in rec:
                times[int(rec["step"])] = float(rec["elapsed_s"])
    return times


def sweep(run_dir: str | Path, suites: list[str], out_dir: str | Path, cfg: EvalConfig | None = None,
          device: str = "cpu", log=print, rt=None) -> list[dict]:
    """Evaluate every ckpt_*.pt of a run folder; one row per checkpoint in OUT/sweep.json and sweep.md."""
    from tinylm.report.tables import sweep_report

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    paths = sorted(run_dir.glob("ckpt_*.pt"))
    if not paths:
        raise DataError(f"{run_dir}: no checkpoints (ckpt_*.pt) to sweep")
    times = training_times(run_dir)
    rows = []
    for path in paths:
        if not rt or rt.is_main:
            log(f"== {path.name}")
        res = evaluate_checkpoint(path, suites, out_dir / path.stem, cfg, device, log, rt)
        step = res.get("step")
        rows.append({"checkpoint": path.name, "step": step, "elapsed_s": times.get(step),
                     "suites": {s["suite"]: {k: s.get(k) for k in SWEEP_KEYS} for s in res["suites"]}})
    if not rt or rt.is_main:
        atomic_write_json(out_dir / "sweep.json", {"run": str(run_dir), "rows": rows})
        atomic_write_text(out_dir / "sweep.md", sweep_report(rows) + "\n")
    return rows


# -----------------------------------------------------------------------------
# Command line
