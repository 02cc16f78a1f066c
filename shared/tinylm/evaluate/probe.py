"""Linear probes on the residual stream: what each layer of a trained model encodes, read off by a
classifier that can only draw a hyperplane.

    tinylm probe --checkpoint best.pt --suite datasets/nightly-mini/test.txt --out probes/

The model reads each example's true trace (teacher forcing, with the step-anchored windows the
evaluator decodes with). At chosen tokens of every step the residual stream is taken after the
embedding (layer 0) and after each block, and one multinomial logistic regression per layer and
question (ridge regression onto one-hot labels, arg-max: closed form and deterministic) is fitted
on the first half of the examples and scored on the other half:

- `value`: at a step's `@` marker (the model is about to write the line that runs, then the state
  before it), the current value of each variable the state will list; one probe per variable
  name, accuracy pooled over them.
- `line`: at a step's first token, the index of the line that step marks (the line about to run).

Beside each accuracy: the majority-class rate of the held-out labels (what a probe that learns
nothing scores) and a control, the same probe fitted to shuffled training labels. The table and the
plot (accuracy against layer, 95% Wilson intervals, y from 0) go to OUT/probe.md and OUT/probe.png,
the numbers to OUT/probe.json. The questions read the `@line$name?value` marks every trace format
has; a suite without them is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, atomic_write_json
from tinylm.base.stats import wilson
from tinylm.decode.strategies import step_token_id
from tinylm.evaluate.explain import window_starts
from tinylm.evaluate.scoring import read_suite
from tinylm.lang.format import STEP

QUESTIONS = ("value", "line")
STATE = re.compile(r"([A-Za-z_]\w*)\?(-?\d+)")


def step_labels(target: str) -> list[dict]:
    """Per step of an m2 trace: the marked line's index and the state it lists {name: value}."""
    out = []
    for step in target.split(STEP):
        lines = step.split("\n")
        marked = [i for i, line in enumerate(lines) if "@" in line]
        if not marked:
            raise DataError("a trace step has no '@' line marker (probes need TinyPy execution traces)")
        line = lines[marked[0]]
        state = line[line.index("$") + 1:].split("|")[0] if "$" in line else ""   # "$a?1;b?2|" (then output)
        out.append({"line": marked[0], "state": {k: int(v) for k, v in STATE.findall(state)}})
    return out


@torch.no_grad()
def residuals(model, ids: list[int], positions: list[int], step_id: int) -> torch.Tensor:
    """(layers + 1, len(positions), C): the residual stream at each position, after the embedding
    and after every block, computed in the window the decoder uses to predict the token after it
    (one forward per window: attention is causal, so a longer forward gives each position the same)."""
    starts = window_starts(ids, 1, step_id, model.config.block_size)   # starts[p]: the window that reads ids[p]
    taken: list[torch.Tensor] = []
    modules = [model.drop, *model.blocks]
    out = torch.empty(len(modules), len(positions), model.config.n_embd)
    groups: dict[int, list[int]] = {}
    for j, p in enumerate(positions):
        groups.setdefault(starts[p], []).append(j)
    hooks = [m.register_forward_hook(lambda _m, _i, o: taken.append(o)) for m in modules]
    try:
        for s, js in groups.items():
            taken.clear()
            end = max(positions[j] for j in js) + 1
            model(torch.tensor([ids[s:end]], device=model.wte.weight.device))
            for layer, h in enumerate(taken):
                out[layer, js] = h[0, [positions[j] - s for j in js]].float().cpu()
    finally:
        for h in hooks:
            h.remove()
    return out


def collect(model, tokenizer, examples) -> dict[str, dict]:
    """For each question: features (layers, N, C), labels (N,) as class ids, the example of each
    row, and for `value` the variable name of each row."""
    step_id = step_token_id(tokenizer)
    at = tokenizer.token_id("@")
    rows = {q: {"x": [], "y": [], "example": [], "name": []} for q in QUESTIONS}
    for e in examples:
        ids = e.prompt_ids + e.target_ids
        P = len(e.prompt_ids)
        labels = step_labels(e.target)
        markers = [i for i in range(P, len(ids)) if ids[i] == at]
        starts = [P] + [i + 1 for i in range(P, len(ids)) if ids[i] == step_id]
        if len(markers) != len(labels):
            raise DataError(f"example {e.id}: {len(markers)} '@' tokens for {len(labels)} steps")
        feats = residuals(model, ids, markers + starts[:len(labels)], step_id)
        n = len(labels)
        for k, lab in enumerate(labels):
            for name, value in lab["state"].items():
                r = rows["value"]
                r["x"].append(feats[:, k]), r["y"].append(value), r["example"].append(e.id), r["name"].append(name)
            r = rows["line"]
            r["x"].append(feats[:, n + k]), r["y"].append(lab["line"]), r["example"].append(e.id), r["name"].append("")
    for r in rows.values():
        if not r["x"]:
            raise DataError("no probe rows: the suite's traces hold no states")
        r["x"] = torch.stack(r["x"], dim=1)   # (layers, N, C)
        r["y"] = torch.tensor(r["y"])
    return rows


def fit_probe(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, ridge: float = 1.0) -> torch.Tensor:
    """A linear classifier fitted on rows `train`, its predictions for every row: ridge regression
    onto one-hot labels (closed form, deterministic) over standardised features, arg-max."""
    classes, y_idx = torch.unique(y, return_inverse=True)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1)], dim=1).double()   # (N, C + 1): a bias column
    targets = torch.nn.functional.one_hot(y_idx, len(classes)).double()
    zt = z[train]
    w = torch.linalg.solve(zt.T @ zt + ridge * torch.eye(z.shape[1], dtype=z.dtype), zt.T @ targets[train])
    return classes[(z @ w).argmax(-1)]


def probe(rows: dict[str, dict], split: float = 0.5, seed: int = 0) -> dict:
    """Held-out accuracy per question and layer (`value`: one probe per variable name, pooled),
    with the majority-class rate and the shuffled-label control."""
    result = {}
    for q, r in rows.items():
        examples = sorted(set(r["example"]))
        cut = examples[int(len(examples) * split)] if len(examples) > 1 else examples[0] + 1
        train = torch.tensor([e < cut for e in r["example"]])
        if train.all() or not train.any():
            raise DataError(f"probe '{q}': too few examples for a held-out split")
        y = r["y"]
        shuffled = y.clone()
        perm = torch.randperm(int(train.sum()), generator=torch.Generator().manual_seed(seed))
        shuffled[train] = y[train][perm]
        groups = [torch.tensor([n == name for n in r["name"]]) for name in sorted(set(r["name"]))]
        groups = [g for g in groups if (g & train).any() and (g & ~train).any()]
        test = torch.zeros_like(train)
        for g in groups:
            test |= g & ~train
        n = int(test.sum())
        majority = sum(int((y[g & ~train] == torch.mode(y[g & train]).values).sum()) for g in groups)
        layers = []
        for layer in range(r["x"].shape[0]):
            right = control = 0
            for g in groups:
                x, held = r["x"][layer][g], y[g & ~train]
                right += int((fit_probe(x, y[g], train[g])[~train[g]] == held).sum())
                control += int((fit_probe(x, shuffled[g], train[g])[~train[g]] == held).sum())
            layers.append({"layer": layer, "n": n, "correct": right, "accuracy": right / n,
                           "ci": list(wilson(right, n)), "control": control / n})
        result[q] = {"n_train": int((train & test.logical_not()).sum()), "n_test": n, "majority": majority / n,
                     "probes": len(groups), "layers": layers}
    return result


def table(result: dict) -> str:
    lines = ["| question | layer | n | accuracy % (95% interval) | shuffled-label control % | majority class % |",
             "|---|---|---|---|---|---|"]
    for q, res in result.items():
        for row in res["layers"]:
            lo, hi = row["ci"]
            lines.append(f"| {q} | {row['layer']} | {row['n']} | {100 * row['accuracy']:.1f} ({100 * lo:.1f}–{100 * hi:.1f}) "
                         f"| {100 * row['control']:.1f} | {100 * res['majority']:.1f} |")
    return "\n".join(lines) + "\n\nLayer 0 is the embedding; layer k the residual stream after block k.\n"


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for q, res in result.items():
        layers = [r["layer"] for r in res["layers"]]
        acc = [100 * r["accuracy"] for r in res["layers"]]
        err = [[a - 100 * r["ci"][0] for a, r in zip(acc, res["layers"])],
               [100 * r["ci"][1] - a for a, r in zip(acc, res["layers"])]]
        line = ax.errorbar(layers, acc, yerr=err, marker="o", capsize=3, label=f"{q}")
        ax.plot(layers, [100 * r["control"] for r in res["layers"]], ls=":", color=line[0].get_color(),
                label=f"{q}: shuffled labels")
    ax.set(xlabel="layer (0 = embedding)", ylabel="held-out accuracy %", ylim=(0, 100), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def cli(argv: list[str]) -> int:
    ap = ArgumentParser(prog="tinylm probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt) trained on TinyPy traces")
    ap.add_argument("--suite", required=True, help="a test file of TinyPy traces")
    ap.add_argument("--limit", type=int, default=200, help="examples read (the first half trains the probes)")
    ap.add_argument("--out", required=True, help="output folder (probe.json, probe.md, probe.png)")
    ap.add_argument("--device", default="auto", help="auto: a GPU if there is one, else cpu")
    args = ap.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise DataError(f"{args.checkpoint}: no such checkpoint")
    if args.limit < 4:
        raise ConfigError(f"--limit {args.limit}: probes need at least 4 examples (half train, half test)")
    from tinylm.model.checkpoint import load_model

    model, tokenizer, _ = load_model(args.checkpoint, args.device)
    rows = collect(model.eval(), tokenizer, read_suite(args.suite, tokenizer, limit=args.limit))
    result = probe(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "probe.json", {"checkpoint": str(args.checkpoint), "suite": str(args.suite),
                                           "limit": args.limit, "questions": result})
    with atomic_path(out / "probe.md") as tmp:
        tmp.write_text(table(result))
    plot(result, out / "probe.png", f"Linear probes: {Path(args.checkpoint).name}")
    print(table(result))
    return 0
