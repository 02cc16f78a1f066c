"""One trace, seen from inside the model: a self-contained HTML page per example.

    tinylm explain --checkpoint best.pt --suite datasets/demo/test.txt --index 0 --out page.html

The model traces the example's program greedily, as the evaluator does (same window). The trace is
then replayed position by position with the context the decoder used for each token (the
step-anchored windows restart positions at a step boundary), recording per token the probability
of the chosen token, every layer's attention, and the logit lens (what the output layer would
predict from each layer's residual stream). Replaying the contexts is exact: its arg-max at every
position is the generated token, which `explain` checks before it writes anything.

The page (no server, no network; it opens from disk) shows the program, the true trace and the
model's trace side by side, the first wrong token outlined and every generated token coloured by
its probability; the step-by-step states, true and generated; for the token clicked, each head's
attention over its context as a heat map with the keys it weights most, and the logit-lens strip;
and a table of where each head looks on average, by the role of the key token (see `ROLES`).
Attention is stored sparsely: the `TOP_KEYS` keys each head weights most at each position.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path
from tinylm.decode.strategies import GenerateConfig, generate, step_token_id
from tinylm.evaluate.scoring import generated_text, read_suite, score
from tinylm.lang.format import STEP

TOP_KEYS = 16
"""Keys kept per (position, layer, head): the ones the head weights most."""

ROLES = ("marker", "state", "same line, previous step", "program", "current step", "earlier steps")
"""Where a key sits, relative to the token attending to it (the first that applies): the `@` line
marker; a state annotation (between `$` and `|` in m2 traces); the same line of the previous trace
step; the prompt (the program as given); the token's own step; any earlier step."""


@dataclass
class Replay:
    """Per generated token t (index into the whole sequence): its window start, the probability of
    the chosen token, every layer's top keys and the logit lens."""

    starts: list[int]
    probs: list[float]
    argmax: list[int]
    attention: list[list[list[list[tuple[int, float]]]]]   # [t][layer][head] -> [(key index, weight)]
    lens: list[list[tuple[int, float]]]                     # [t][layer] -> (top token, probability)


def window_starts(ids: list[int], prompt_len: int, step_id: int | None, W: int) -> list[int]:
    """The first context token of each prediction ids[L] (L >= prompt_len) under the decoder's
    windows: 0 while everything fits; step-anchored: re-anchored (as `Decoder._anchor`) at the
    previous step's start, else the current step's, else the last W/2 tokens, once the window is
    over W. Without `step_id`: the last W tokens (the reference window)."""
    starts, start = [], 0
    for L in range(prompt_len, len(ids)):
        if L - start > W:
            if step_id is None:
                start = L - W
            else:
                bounds = [i for i, t in enumerate(ids[:L - 1]) if t == step_id]
                anchors = ([bounds[-2] + 1] if len(bounds) >= 2 else []) + ([bounds[-1] + 1] if bounds else [])
                start = next((s for s in anchors if L - s <= W), L - W // 2)
        starts.append(start)
    return starts


@torch.no_grad()
def replay(model, ids: list[int], prompt_len: int, starts: list[int]) -> Replay:
    """Forward each window once (the predictions that share a start share a forward) and gather,
    for every generated position, what the page shows."""
    out = Replay([], [], [], [], [])
    residuals: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: residuals.append(o)) for b in model.blocks]
    try:
        groups: dict[int, list[int]] = {}
        for L, s in zip(range(prompt_len, len(ids)), starts):
            groups.setdefault(s, []).append(L)
        for s, Ls in groups.items():
            residuals.clear()
            x = torch.tensor([ids[s:Ls[-1]]], device=model.wte.weight.device)
            logits, attn = model.forward_with_attention(x)
            lens = torch.stack([model.lm_head(model.ln_f(h)) for h in residuals]).softmax(-1)  # (layers, 1, T, V)
            probs = logits.float().softmax(-1)
            for L in Ls:
                q = L - 1 - s   # the query: the last context token
                out.starts.append(s)
                out.probs.append(float(probs[0, q, ids[L]]))
                out.argmax.append(int(probs[0, q].argmax()))
                per_layer = []
                for a in attn:
                    w, k = a[0, :, q, :q + 1].float().topk(min(TOP_KEYS, q + 1), dim=-1)   # (heads, K)
                    per_layer.append([[(int(ki) + s, round(float(wi), 4)) for ki, wi in zip(kk, ww)]
                                      for kk, ww in zip(k, w)])
                out.attention.append(per_layer)
                top = lens[:, 0, q].max(-1)
                out.lens.append([(int(i), round(float(p), 4)) for p, i in zip(top.values, top.indices)])
    finally:
        for h in hooks:
            h.remove()
    return out


def token_roles(pieces: list[str], prompt_len: int) -> list[dict]:
    """Per token: its step (-1 in the prompt), its line within the step, and whether it is the `@`
    marker or inside a state annotation (`$` ... `|`)."""
    roles, step, line, in_state = [], -1, 0, False
    for i, piece in enumerate(pieces):
        marker = piece == "@"
        if piece == "$":
            in_state = True
        roles.append({"step": step if i >= prompt_len else -1, "line": line, "marker": marker,
                      "state": in_state and piece != "$"})
        if piece == "|" or "\n" in piece:
            in_state = False
        if STEP in piece:
            step, line = step + 1, 0
        elif "\n" in piece:
            line += piece.count("\n")
    return roles


def role_of(key: int, query: int, roles: list[dict]) -> str:
    k, q = roles[key], roles[query]
    if k["marker"]:
        return "marker"
    if k["state"]:
        return "state"
    if k["step"] == q["step"] - 1 and k["line"] == q["line"]:   # step -1: the prompt, step 0's source
        return "same line, previous step"
    if k["step"] < 0:
        return "program"
    return "current step" if k["step"] == q["step"] else "earlier steps"


def head_summary(rep: Replay, roles: list[dict], prompt_len: int) -> list[list[dict]]:
    """[layer][head] -> mean attention mass per role over the generated tokens (of the kept keys)."""
    n_layer, n_head = len(rep.attention[0]), len(rep.attention[0][0])
    sums = [[dict.fromkeys(ROLES, 0.0) for _ in range(n_head)] for _ in range(n_layer)]
    for t, per_layer in enumerate(rep.attention):
        query = prompt_len + t - 1
        for layer, heads in enumerate(per_layer):
            for head, keys in enumerate(heads):
                for key, w in keys:
                    sums[layer][head][role_of(key, query, roles)] += w
    n = len(rep.attention)
    return [[{r: round(v / n, 4) for r, v in h.items()} for h in layer] for layer in sums]


def explain_example(model, tokenizer, example, *, window: str = GenerateConfig.window, max_new_tokens: int | None = None,
                    source: str = "") -> dict:
    """Everything the page shows for one suite example, as plain data."""
    step_id = step_token_id(tokenizer) if window == "step-anchored" else None
    budget = max_new_tokens or 2 * len(example.target_ids) + 8
    cfg = GenerateConfig(max_new_tokens=budget, window=window)
    gen = generate(model, [example.prompt_ids], cfg, eos_id=tokenizer.eos_id, step_id=step_id).ids[0]
    ids = example.prompt_ids + gen
    P = len(example.prompt_ids)
    starts = window_starts(ids, P, step_id, model.config.block_size)
    rep = replay(model, ids, P, starts)
    if rep.argmax != gen:
        at = next(i for i, (a, g) in enumerate(zip(rep.argmax, gen)) if a != g)
        raise AssertionError(f"the replayed windows disagree with the decoder at generated token {at}")
    pieces = tokenizer.token_strings(ids)
    roles = token_roles(pieces, P)
    generated = generated_text(tokenizer, gen)
    result = score(example.target, generated)
    target_pieces = tokenizer.token_strings(example.target_ids)
    first_wrong = next((i for i, (a, b) in enumerate(zip(gen, example.target_ids)) if a != b),
                       None if len(gen) == len(example.target_ids) + 1 else min(len(gen), len(example.target_ids)))
    return {
        "source": source, "result": result, "prompt_len": P, "pieces": pieces, "target_pieces": target_pieces,
        "first_wrong": first_wrong, "starts": rep.starts, "probs": [round(p, 4) for p in rep.probs],
        "attention": rep.attention, "lens": [[(tokenizer.token_strings([i])[0], p) for i, p in per] for per in rep.lens],
        "heads": head_summary(rep, roles, P), "roles": list(ROLES),
        "states": {"target": states_of(example.target), "generated": states_of(generated)},
        "window": window, "block_size": model.config.block_size,
    }


def states_of(trace: str) -> list[str]:
    """Each step's marked line and state annotation (m2: the text from `@` to the end of its line)."""
    out = []
    for step in trace.split(STEP):
        marked = [line for line in step.split("\n") if "@" in line]
        out.append(marked[0][marked[0].index("@"):] if marked else step.strip().split("\n")[-1])
    return out


def render(data: dict) -> str:
    """The page: the template with the data inlined (no network, no server)."""
    template = resources.files("tinylm.evaluate").joinpath("explain_page.html").read_text()
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return template.replace("__TITLE__", html.escape(data["source"])).replace("__DATA__", blob)


def write_page(model, tokenizer, example, out: Path, *, window: str, source: str) -> Path:
    data = explain_example(model, tokenizer, example, window=window, source=source)
    with atomic_path(out) as tmp:
        tmp.write_text(render(data))
    return out


def explain(checkpoint: str | Path, suite: str | Path, index: int, out: str | Path, *,
            window: str = GenerateConfig.window, device: str = "auto") -> Path:
    """The page of example `index` of `suite`."""
    from tinylm.model.checkpoint import load_model

    model, tokenizer, _ = load_model(checkpoint, device)
    examples = read_suite(suite, tokenizer, limit=index + 1)
    if index < 0 or index >= len(examples):
        raise DataError(f"{suite}: no example {index} (it holds {len(examples)})")
    return write_page(model.eval(), tokenizer, examples[index], Path(out), window=window,
                      source=f"{checkpoint} · {suite} #{index}")


def explain_failures(checkpoint: str | Path, suite: str | Path, eval_dir: Path, k: int, *, window: str,
                     device: str = "auto") -> list[Path]:
    """The pages of the first `k` examples an evaluation (eval_dir/results.jsonl) did not match
    exactly, as eval_dir/explain/ID.html."""
    from tinylm.model.checkpoint import load_model

    records = [json.loads(line) for line in (eval_dir / "results.jsonl").read_text().splitlines()]
    wrong = [r["id"] for r in records if r["class"] != "hard"][:k]
    if not wrong:
        return []
    model, tokenizer, _ = load_model(checkpoint, device)
    examples = read_suite(suite, tokenizer, limit=max(wrong) + 1)
    (eval_dir / "explain").mkdir(exist_ok=True)
    return [write_page(model.eval(), tokenizer, examples[i], eval_dir / "explain" / f"{i}.html", window=window,
                       source=f"{checkpoint} · {suite} #{i}") for i in wrong]


def cli(argv: list[str]) -> int:
    ap = ArgumentParser(prog="tinylm explain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt)")
    ap.add_argument("--suite", required=True, help="a test file (examples separated by blank lines)")
    ap.add_argument("--index", type=int, default=0, help="which example of the suite (from 0)")
    ap.add_argument("--out", required=True, help="the HTML page to write")
    ap.add_argument("--window", default=GenerateConfig.window, choices=("reference", "step-anchored"),
                    help="the decoder's window, as in tinylm eval (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto: a GPU if there is one, else cpu")
    args = ap.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise DataError(f"{args.checkpoint}: no such checkpoint")
    if not str(args.out).endswith(".html"):
        raise ConfigError(f"--out {args.out}: the page is HTML; name it *.html")
    print(f"wrote {explain(args.checkpoint, args.suite, args.index, args.out, window=args.window, device=args.device)}")
    return 0
