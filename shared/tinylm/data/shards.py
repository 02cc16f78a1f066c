"""What the TinyPy and the text dataset builds share: the dataset folder's spec file and format
tag, the code fingerprint that keys cached shards, the worker pool that computes shards in order,
and the clean-up of stale shards."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

from tinylm.base.errors import DataError

FORMAT = "tinylm-dataset-1"


def spec_file(folder: str | Path) -> Path:
    """The `dataset.yaml` of a dataset folder (or the file itself)."""
    path = Path(folder)
    if path.suffix in (".yaml", ".yml"):
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such dataset folder")
    return path / "dataset.yaml"


def is_text_spec(path: Path) -> bool:
    """Whether a dataset.yaml describes a text corpus (`kind: text`, see `tinylm.data.corpus`)."""
    from tinylm.base.config import read_yaml

    return read_yaml(path).get("kind") == "text"


_TOKENIZERS: dict[str, Any] = {}  # per worker process: tokenizer dict (as JSON) -> Tokenizer


def worker_tokenizer(data: dict):
    from tinylm.tokens.load import tokenizer_from_dict

    key = json.dumps(data, sort_keys=True)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = tokenizer_from_dict(data)
    return _TOKENIZERS[key]


class InlineExecutor(futures.Executor):
    """Runs each job at submit time, in this process (the 1-worker build)."""

    def submit(self, fn, /, *args, **kwargs):
        future: futures.Future = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def window(workers: int) -> int:
    """Jobs kept in flight: enough to keep every worker busy; one when jobs run inline."""
    return 2 * workers + 1 if workers > 1 else 1


def make_executor(workers: int) -> futures.Executor:
    if workers <= 1:
        return InlineExecutor()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def ordered_map(executor: futures.Executor, fn: Callable, items: Iterable, in_flight: int,
                wanted: Callable[[int], bool] | None = None) -> Iterator:
    """fn(item) for each item, in order, with at most `in_flight` jobs submitted (flat memory).

    `wanted(n)`, given the n jobs in flight, says whether another is likely needed: while it says
    no, the next job waits for a result to be taken (so a consumer that stops early leaves no
    speculative work behind); it never stops the map, only delays a submission."""
    pending: deque = deque()
    try:
        for item in items:
            while pending and (len(pending) >= in_flight or (wanted is not None and not wanted(len(pending)))):
                yield pending.popleft().result()
            pending.append(executor.submit(fn, item))
        while pending:
            yield pending.popleft().result()
    finally:  # closed early: drop the jobs not started yet
        for future in pending:
            future.cancel()


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


SHARD_SOURCES = ("lang/*.py", "tokens/*.py", "data/*.py", "base/errors.py", "base/config.py", "base/files.py")
"""The package's source files (globs under tinylm/) whose code a shard's bytes depend on: the TinyPy
language, the tokenizers, and the data layer (TinyPy and text builds, the filter; its batching
module too, which costs a rebuild on an edit but can never leave a stale shard)."""


def code_fingerprint() -> str:
    """Hash of the source files whose behaviour shards depend on (`SHARD_SOURCES`): an edit to any of
    them makes every build redo its shards."""
    import tinylm

    root = Path(tinylm.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for pattern in SHARD_SOURCES for p in root.glob(pattern)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def remove_stale(folder: Path, keep: set[Path]) -> None:
    """Delete shard folders of other configs and temporary files of killed builds."""
    for path in (folder / "shards").glob("*"):
        if path.is_dir() and path not in keep:
            shutil.rmtree(path)
    for path in [*folder.glob(".*.tmp"), *(folder / "shards").rglob(".*.tmp")]:
        path.unlink()
