"""Atomic outputs and path resolution."""

from __future__ import annotations

import pytest

from tinylm.base.files import atomic_path, atomic_write_text, resolve_path


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_relative_paths_resolve_from_the_repository_root(repo_root):
    config = repo_root / "tinypy_code_tracing_demo" / "configs" / "any.yaml"
    assert resolve_path("datasets/demo", config) == repo_root / "datasets" / "demo"
    assert resolve_path("/abs/path", config).as_posix() == "/abs/path"
