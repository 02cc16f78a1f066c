"""Model -> shapes: what each module of a model receives and returns for one batch, its parameter
count, and an estimate of the memory one training step takes.

`module_shapes(model, *args)` runs one forward with a forward hook on every module (any
`nn.Module`: nothing to inherit or declare) and returns one `ModuleShapes` per module, in the
order of `named_modules()`: the shapes of its first call's tensor inputs and outputs, how many
times it ran, and its parameters (its own and its children's; a weight tied between two modules
counts in both, and once in the total). A module that never ran shows 0 calls: a dropout that is
never applied, say. On the meta device the forward computes shapes and nothing else, so a
60M-parameter model inspects in seconds (most of them torch loading its meta kernels, once).

`training_memory(config, rows)` estimates one training step's peak bytes on one process: float32
weights, gradients and AdamW's two moments (16 bytes per parameter), plus what the backward pass
keeps: every leaf module's outputs (as the hooks saw them, at the activation dtype's width) and each
layer's (B, nh, T, T) attention scores in float32 (as attention with a mask computes them; the
fused causal kernels keep none, so long contexts are overcounted). It is a rough figure for
ranking configurations against a budget (`tinylm sweep`), not a measurement: against the peak
resident memory of two AdamW steps on a CPU it read 585 MiB for 583 (demo model, 64 x 128 tokens),
812 for 844 (width 256, 32 x 256), 943 for 1,061 (25M parameters, 16 x 128), and 1,300 for 425 at
512 tokens.

    tinylm inspect tinypy_code_tracing_demo/2_model_training/configs/cpu.yaml [key=value ...]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError
from tinylm.base.files import resolve_path

PARAM_STATE_BYTES = 16  # float32 weight, gradient, AdamW exp_avg and exp_avg_sq


@dataclass
class ModuleShapes:
    name: str       # qualified name, "" for the model itself
    kind: str       # class name
    detail: str     # extra_repr() of a leaf module (sizes, dropout p), else ""
    params: int     # parameters of the module and its children
    inputs: str     # shapes of the first call's tensor arguments, "-" if it never ran
    outputs: str
    calls: int
    out_bytes: int  # bytes of the tensors it returned, summed over its calls


def _describe(x) -> str:
    """A tensor as its shape (with its dtype unless floating point); containers element by element."""
    if isinstance(x, torch.Tensor):
        shape = str(tuple(x.shape))
        return shape if x.is_floating_point() else f"{shape} {str(x.dtype).removeprefix('torch.')}"
    if type(x) in (tuple, list):
        return "[" + ", ".join(_describe(v) for v in x) + "]"
    return "None" if x is None else type(x).__name__


def _tensor_bytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (tuple, list)):
        return sum(_tensor_bytes(v) for v in x)
    return 0


def module_shapes(model: nn.Module, *args, **kwargs) -> list[ModuleShapes]:
    """Run model(*args, **kwargs) once (no gradients) with a hook on every module; see the module docstring."""
    seen: dict[str, dict] = {}

    def hook_for(name: str):
        def hook(module, h_args, h_kwargs, output):
            rec = seen.setdefault(name, {"calls": 0, "out_bytes": 0})
            if not rec["calls"]:
                shown = [a for a in (*h_args, *h_kwargs.values()) if a is not None and not isinstance(a, bool)]
                rec["inputs"] = ", ".join(_describe(a) for a in shown)
                rec["outputs"] = _describe(output)
            rec["calls"] += 1
            rec["out_bytes"] += _tensor_bytes(output)
        return hook

    handles = [m.register_forward_hook(hook_for(name), with_kwargs=True) for name, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, m in model.named_modules():
        rec = seen.get(name, {"calls": 0, "out_bytes": 0, "inputs": "-", "outputs": "-"})
        leaf = next(m.children(), None) is None
        rows.append(ModuleShapes(name, type(m).__name__, m.extra_repr() if leaf else "",
                                 sum(p.numel() for p in m.parameters()), rec["inputs"], rec["outputs"],
                                 rec["calls"], rec["out_bytes"]))
    return rows


def shapes_table(rows: list[ModuleShapes]) -> str:
    """Aligned text: module (indented by depth), type, parameters, calls, input and output shapes."""
    header = ("module", "type", "params", "calls", "input", "output")
    lines = [(("  " * r.name.count(".") + r.name.rsplit(".", 1)[-1]) if r.name else "(model)",
              f"{r.kind}({r.detail})" if r.detail else r.kind, f"{r.params:,}", str(r.calls), r.inputs, r.outputs)
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header[:-1])]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cols[:-1], widths)) + "  " + cols[-1]
                     for cols in [header, *lines]).rstrip()


# -----------------------------------------------------------------------------
# Training memory


def meta_model(config):
    """A GPT of `config` on the meta device: shapes without storage or arithmetic."""
    from tinylm.model.gpt import GPT

    with torch.device("meta"):
        return GPT(config)


def training_memory(config, rows: int, activation_bytes: int = 4) -> dict:
    """Estimated bytes of one training step of `rows` x block_size tokens (see the module docstring)."""
    model = meta_model(config).train()
    x = torch.zeros(rows, config.block_size, dtype=torch.long, device="meta")
    shapes = module_shapes(model, x)
    leaves = {name for name, m in model.named_modules() if next(m.children(), None) is None}
    activations = sum(r.out_bytes for r in shapes if r.name in leaves) * activation_bytes // 4
    scores = config.n_layer * rows * config.n_head * config.block_size ** 2 * 4
    params = model.num_params()
    state = PARAM_STATE_BYTES * params
    return {"parameters": params, "state_bytes": state, "activation_bytes": activations + scores,
            "total_bytes": state + activations + scores}


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def model_of(cfg, config_file=None):
    """(GPTConfig, note) of a training config: its init_from checkpoint's, or its model section with the
    dataset's vocab_size (the preset's when the dataset is not built; the note says so)."""
    from tinylm.base.config import from_dict
    from tinylm.data.batches import open_dataset
    from tinylm.model.checkpoint import load_checkpoint
    from tinylm.model.gpt import GPTConfig
    from tinylm.model.presets import model_preset
    from tinylm.train.config import resolve_model_config

    if cfg.init_from:
        ckpt = load_checkpoint(resolve_path(cfg.init_from, config_file))
        return from_dict(GPTConfig, ckpt["model_config"], where=f"{cfg.init_from} (model_config)"), ""
    folder = resolve_path(cfg.data.stages[0].dataset if cfg.data.stages else cfg.data.dataset, config_file)
    if (folder / "manifest.json").is_file():
        return resolve_model_config(cfg, open_dataset(folder).vocab_size, str(config_file or "config")), ""
    preset = cfg.model.get("preset")
    vocab = cfg.model.get("vocab_size") or (model_preset(preset) if preset else {}).get("vocab_size")
    vocab = vocab or GPTConfig().vocab_size
    note = f"vocab_size {vocab}: {folder} is not built, so not the dataset's"
    return resolve_model_config(cfg, vocab, str(config_file or "config")), note


def cli(argv: list[str]) -> int:
    """tinylm inspect CONFIG: the model of a training config, module by module, for one batch."""
    from tinylm.studies.tasks import load_train_config

    ap = ArgumentParser(prog="tinylm inspect", description=cli.__doc__)
    ap.add_argument("config", help="training config YAML (the model is built as `tinylm train` builds it)")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.n_layer=4")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="rows of the batch (default: the config's micro-batch, batch_size / grad_accum)")
    ap.add_argument("--device", choices=("meta", "cpu"), default="meta",
                    help="meta: shapes only (default); cpu: run the forward for real")
    ap.add_argument("--eval", action="store_true", help="inspect in eval mode (default: train mode, dropout on)")
    args = ap.parse_args(argv)
    cfg = load_train_config(args.config, args.overrides)
    config, note = model_of(cfg, args.config)
    rows = cfg.batch_size // cfg.grad_accum if args.batch_size is None else args.batch_size
    if rows < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {rows}")
    from tinylm.model.gpt import GPT

    with torch.device(args.device):
        model = GPT(config)
    model.train(not args.eval)
    x = torch.zeros(rows, config.block_size, dtype=torch.long, device=args.device)
    print(shapes_table(module_shapes(model, x)))
    memory = training_memory(config, rows, activation_bytes=2 if cfg.dtype in ("bfloat16", "float16") else 4)
    print(f"\n{model.num_params():,} parameters; batch {rows} x {config.block_size} tokens "
          f"({'eval' if args.eval else 'train'} mode); estimated training memory "
          f"{format_bytes(memory['total_bytes'])} ({format_bytes(memory['state_bytes'])} weights, gradients "
          f"and AdamW state, {format_bytes(memory['activation_bytes'])} activations)")
    if note:
        print(f"note: {note}")
    return 0
