"""Files that are never half-written, and the provenance written next to every output.

`atomic_path(path)` yields a temporary sibling name and renames it over `path` only when the
block finishes without an exception; a crash leaves no file under the final name.
`run_metadata()` records the git revision, the command line, the host and the versions that
produced an output.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (the block may make it a file or a folder); rename it to
    `path` if the block succeeds, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def git_revision(cwd: str | Path | None = None) -> str:
    """The current git commit (with '-dirty' if the tree has changes), or 'unknown' outside git."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_metadata() -> dict:
    """Who/what/when produced an output: revision, argv, host, Python and package versions."""
    import numpy

    meta = {
        "git_revision": git_revision(),
        "argv": sys.argv,
        "host": platform.node(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        meta["torch"] = str(torch.__version__)
    return meta


def machine() -> dict:
    """The CPU a number was measured on: its model name, the AVX/AMX flags it has, and its cores
    (Linux reads /proc/cpuinfo, as `lscpu` does; elsewhere the platform's processor string)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor speaks for all
    flags = sorted(f for f in fields.get("flags", "").split() if f.startswith(("avx", "amx")))
    return {"cpu": fields.get("model name") or platform.processor() or platform.machine(), "flags": flags,
            "cores": os.cpu_count()}


def find_repo_root(start: str | Path) -> Path | None:
    """The nearest folder at or above `start` holding both `pyproject.toml` and `datasets/`."""
    start = Path(start).resolve()
    for folder in [start, *start.parents] if start.is_dir() else start.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "datasets").is_dir():
            return folder
    return None


def resolve_path(path: str | Path, config_file: str | Path | None = None) -> Path:
    """Resolve a path written in a config file.

    Absolute paths stay. Relative ones are taken from the repository root that holds the config
    file (so `datasets/demo` means the same from every project), else from the config file's
    folder, else from the working directory.
    """
    path = Path(path)
    if path.is_absolute():
        return path
    if config_file is not None:
        root = find_repo_root(Path(config_file).resolve().parent)
        return (root / path) if root else (Path(config_file).resolve().parent / path)
    return Path.cwd() / path
