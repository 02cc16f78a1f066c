"""The package's data flow, kept: each subpackage imports only from the layers before it, and no two
modules import each other (directly or round a loop), counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import tinylm

ROOT = Path(tinylm.__file__).parent
LAYERS = ["base", "lang", "tokens", "data", "model", "train", "decode", "report", "evaluate", "interop", "studies",
          "cli"]
"""In data-flow order; `cli` is the command table (tinylm/cli.py, __main__.py), above everything."""
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
"""Upward imports not yet removed, each with why; a new one fails the test."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The tinylm modules `path` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tinylm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinylm"):
            for a in node.names:   # `from tinylm.base import runtime` imports the module tinylm.base.runtime
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != "tinylm"}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else LAYERS.index("cli")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, known) - {m} for m, p in known.items()}


def test_every_module_belongs_to_a_layer():
    stray = [m for m in modules() if m not in ("tinylm", "tinylm.cli", "tinylm.__main__")
             and m.split(".")[1] not in LAYERS]
    assert not stray, f"modules outside the layers: {stray}"


def test_no_module_imports_from_a_later_layer():
    upward = sorted((m, dep) for m, deps in graph().items() for dep in deps
                    if layer(dep) > layer(m) and (m, dep) not in KNOWN_UPWARD)
    assert not upward, "upward imports (importer, imported): " + ", ".join(map(str, upward))
    edges = graph()
    stale = [pair for pair in KNOWN_UPWARD if pair[1] not in edges.get(pair[0], set())]
    assert not stale, f"KNOWN_UPWARD lists imports that no longer exist: {stale}"


def test_no_import_cycles():
    edges, state, cycles = graph(), {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for dep in sorted(edges[m]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [m, dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_training_loop_knows_no_study():
    # studies plug their tasks in (tinylm.train.task); the loop itself is the language model's
    mentions = [p.name for p in (ROOT / "train").glob("*.py") if "forget" in p.read_text().lower()]
    assert not mentions, f"train/ modules that mention forgetting: {mentions}"


def test_no_module_outgrows_one_job():
    # a module past ~600 lines is doing more than one thing: split it along its seams
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
