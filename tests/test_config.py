"""The strict config loader: layers merge in order; unknown keys, wrong types and bad YAML fail clearly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from tinylm.base.config import from_dict, load_config, parse_overrides, to_dict, write_yaml
from tinylm.base.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    schedule: Literal["cosine", "constant"] = "cosine"

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    tags: list[str] = field(default_factory=list)
    device: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_layers_merge_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load_config(Run, path, ["optim.schedule=constant", "tags=[a, b]"])
    assert cfg.steps == 20
    assert cfg.optim.lr == 0.01
    assert cfg.optim.schedule == "constant"
    assert cfg.tags == ["a", "b"]
    assert cfg.name == "run"


def test_int_is_accepted_where_a_float_is_expected():
    assert from_dict(Run, {"optim": {"lr": 1}}).optim.lr == 1.0


def test_unknown_nested_key_names_file_and_dotted_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'optim\.lrr'"):
        load_config(Run, path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": "ten"}, "'steps' must be an integer"),
        ({"steps": True}, "'steps' must be an integer"),
        ({"optim": {"schedule": "linear"}}, "'optim.schedule' must be one of"),
        ({"optim": {"lr": -1.0}}, "optim.lr must be > 0"),
        ({"optim": 3}, "'optim' must be a mapping"),
        ({"tags": "a"}, "'tags' must be a list"),
    ],
)
def test_bad_values_are_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Run, data, where="run.yaml")


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("steps: 3\noptim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line \d+, column \d+: malformed YAML"):
        load_config(Run, path)


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Run, "does/not/exist.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["steps"])


def test_round_trip_through_yaml(tmp_path):
    cfg = from_dict(Run, {"name": "x", "tags": ["t"], "optim": {"lr": 0.5}})
    write_yaml(cfg, tmp_path / "config.yaml")
    assert load_config(Run, tmp_path / "config.yaml") == cfg
    assert to_dict(cfg)["optim"] == {"lr": 0.5, "schedule": "cosine"}


def test_a_number_in_exponent_notation_is_a_number_in_a_file_and_an_override(tmp_path):
    from tinylm.train.config import OptimConfig

    path = tmp_path / "optim.yaml"
    path.write_text("lr: 1e-3\nmin_lr: 2E-5\n")
    cfg = load_config(OptimConfig, path, ["grad_clip=5e-1"])
    assert (cfg.lr, cfg.min_lr, cfg.grad_clip) == (1e-3, 2e-5, 0.5)
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(OptimConfig, None, ["lr=1e-3x"])
