"""The `tinylm` command: one subcommand per stage, each implemented beside the code it runs.

Subcommands are looked up lazily so that `tinylm trace` does not import torch. Each target is a
function taking the remaining argv and returning an exit status. A `TinylmError` becomes one
line `error: ...` on stderr and exit status 2. Every subcommand (and every demo stage script, through
`run_command`) parses its options with `ArgumentParser`, whose usage mistakes are such errors too.
"""

from __future__ import annotations

import importlib
import sys

from tinylm.base.args import run_command

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("tinylm.data.stages:cli", "build a dataset folder, or run one data stage (data generate ...)"),
    "trace": ("tinylm.lang.trace:cli", "trace programs into execution traces"),
    "filter": ("tinylm.data.filter:cli", "apply the determinism filter to traces"),
    "tokenize": ("tinylm.tokens.load:cli", "encode traces into a .bin of token ids"),
    "train": ("tinylm.studies.tasks:cli", "train a model (single process or under torchrun)"),
    "import-reference": ("tinylm.interop.reference:cli", "convert a reference framework checkpoint"),
    "generate": ("tinylm.decode.strategies:cli", "generate text from a checkpoint"),
    "eval": ("tinylm.evaluate.command:cli", "score a checkpoint on TinyPy test suites"),
    "failures": ("tinylm.evaluate.failures:cli", "where each trace not matched exactly first goes wrong: marker, state, output or copy"),
    "report": ("tinylm.report.render:cli", "tables and plots from evaluation results"),
    "explain": ("tinylm.evaluate.explain:cli", "one example traced by a checkpoint, as an HTML page: probabilities, attention, logit lens"),
    "probe": ("tinylm.evaluate.probe:cli", "linear probes per layer: variable values and the line about to run"),
    "inspect": ("tinylm.studies.inspect_model:cli", "a config's model module by module: shapes, parameters, memory"),
    "compare": ("tinylm.report.compare:cli", "training curves of several run folders on one plot, and a table"),
    "sweep": ("tinylm.studies.sweep:cli", "train a grid of config overrides within a memory budget"),
    "export": ("tinylm.interop.export:cli", "a checkpoint as a HuggingFace transformers folder or llama2.c files (Llama-shaped models)"),
}


def usage() -> str:
    lines = ["usage: tinylm <command> [args...]   (or python -m tinylm; tinylm --version)", "", "commands:"]
    lines += [f"  {name:<17} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from tinylm import __version__

        print(f"tinylm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}' (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    return run_command(getattr(importlib.import_module(module_name), func_name), rest)


if __name__ == "__main__":
    sys.exit(main())
