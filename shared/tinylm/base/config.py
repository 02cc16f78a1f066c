"""Typed configuration: YAML -> dataclass -> dotted overrides, strictly.

Every stage's settings are a dataclass. `load_config(Cls, path, overrides)` merges three layers
(dataclass defaults, the YAML file, `key.sub=value` overrides; later wins) and fails with a
`ConfigError` naming the file and the dotted key on an unknown key, a wrong type or a value a
dataclass's `validate()` rejects. `to_dict` turns a config back into plain data for saving next
to a run's outputs.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tinylm.base.errors import ConfigError

T = TypeVar("T")
_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """Turn ['train.lr=3e-4', 'model.n_layer=4'] into a nested dict (values parsed as YAML scalars)."""
    nested: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict, update: dict) -> dict:
    """Recursively merge `update` into a copy of `base` (update wins)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_dict(cls: type[T], data: dict, where: str = "config", prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses; strict on keys and types."""
    if not isinstance(data, dict):
        name = prefix.rstrip(".") or "<top>"
        raise ConfigError(f"{where}: '{name}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"{where}: unknown key '{key}' (expected one of: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(hints[name], value, where, f"{prefix}{name}") for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {prefix.rstrip('.') or '<top>'}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def _coerce(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: '{key}' has an invalid value {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, where, prefix=f"{key}.")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, where, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, str) and _SCIENTIFIC.match(value):  # YAML 1.1 reads 1e-3 as a string
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    return value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple = (),
                base: dict | None = None) -> T:
    """Defaults <- `base` <- YAML file at `path` <- dotted `overrides`, validated into `cls`."""
    data = dict(base or {})
    where = str(path) if path is not None else "config"
    if path is not None:
        data = deep_merge(data, read_yaml(path))
    if overrides:
        data = deep_merge(data, parse_overrides(list(overrides)))
        where += " (with overrides)" if path is not None else ""
    return from_dict(cls, data, where)


def to_dict(cfg: Any) -> Any:
    """Plain-data copy of a (nested) config dataclass, for YAML/JSON."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def write_yaml(data: Any, path: str | Path) -> None:
    """Write a config (dataclass or dict) as YAML, atomically."""
    from tinylm.base.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(data), sort_keys=False))


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass `cls` (the string literal that follows
    its annotated line in the source), by field name; fields without one are left out."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per leaf key of dataclass `cls`: `dotted.key = default  doc`, nested dataclasses
    expanded (an optional section is shown by its own keys)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        hint = hints[f.name]
        nested = next((a for a in [hint, *typing.get_args(hint)] if dataclasses.is_dataclass(a)), None)
        if nested is not None:
            listed = typing.get_origin(hint) is list   # a list of sections: keys of each item
            lines.append(f"{prefix}{f.name}: {docs.get(f.name, 'section')}" + (" (off by default)" if default is None else ""))
            lines += describe(nested, f"{prefix}{f.name}{'[]' if listed else ''}.")
            continue
        shown = yaml.safe_dump(to_dict(default), default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        lines.append(f"{prefix}{f.name} = {shown}" + (f"  {docs[f.name]}" if f.name in docs else ""))
    return lines
