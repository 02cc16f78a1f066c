"""The dataset spec: one dataclass per section of a TinyPy folder's `dataset.yaml` (generator or
mixture, trace format, tokenizer, splits, OOD suites, decontamination), validated on load."""


from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinylm.base.config import load_config
from tinylm.base.errors import ConfigError
from tinylm.data.mixture import Mixture
from tinylm.data.shards import (
    is_text_spec,
    spec_file,
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# ----------------------------------------------------------------------------------------------
# The dataset spec: one dataclass per section of dataset.yaml


@dataclass
class MixComponent:
    """One generator of a mixture, and its share of the stream."""

    preset: str = "demo"
    """A name from `tinylm.lang.spec.PRESETS`."""
    weight: float = 1.0
    """Relative share of the stream's programs (> 0)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Knobs changed on top of the preset (nested mappings or dotted keys)."""


@dataclass
class GeneratorConfig:
    """Which generator produces a stream's programs: one preset, or a mixture of several."""

    preset: str = "demo"
    """A name from `tinylm.lang.spec.PRESETS` (not read with `mix`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Knobs changed on top of the preset (nested mappings or dotted keys; not read with `mix`)."""
    mix: list[MixComponent] | None = None
    """Generators drawn in proportion to their weights instead of one preset (see `Mixture`)."""

    def resolve(self, where: str = "generator"):
        """The validated `GeneratorSpec`, or a `Mixture` of them; errors name `where`'s keys."""
        if self.mix is None:
            return _resolve_preset(self.preset, self.overrides, where)
        if self.preset != GeneratorConfig.preset or self.overrides:
            raise ConfigError(f"'{where}': give either 'preset' (with 'overrides') or 'mix', not both")
        if not self.mix:
            raise ConfigError(f"'{where}.mix' must list at least one generator")
        generators = []
        for k, part in enumerate(self.mix):
            if not (math.isfinite(part.weight) and part.weight > 0):
                raise ConfigError(f"'{where}.mix[{k}].weight' must be a number > 0, got {part.weight}")
            generators.append(_resolve_preset(part.preset, part.overrides, f"{where}.mix[{k}]"))
            if generators[-1].header != generators[0].header:
                raise ConfigError(f"'{where}.mix[{k}].preset': its header line {generators[-1].header!r} differs "
                                  f"from {generators[0].header!r} of '{where}.mix[0]' (components share one)")
        return Mixture([p.preset for p in self.mix], [p.weight for p in self.mix], generators)


def _resolve_preset(name: str, overrides: dict, where: str):
    from tinylm.lang.spec import preset

    try:
        return preset(name, **overrides)
    except ConfigError as exc:
        raise ConfigError(f"'{where}': {exc}") from None


@dataclass
class TokenizerConfig:
    """How token ids are made: a fixed keyword vocabulary, or one learned from the first traces."""

    kind: Literal["keyword", "char", "sentencepiece"] = "keyword"
    vocab: str = "demo"
    """Keyword vocabulary name (kind: keyword)."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece model type (kind: sentencepiece)."""
    vocab_size: int = 512
    """SentencePiece vocabulary size (kind: sentencepiece)."""
    sample: int = 10000
    """char/sentencepiece: learned from the first `sample` traces of the main stream (plus every
    printable ASCII character, so that a character rare in the sample still has a token)."""


@dataclass
class SplitSizes:
    """Examples per split of the main stream; filled in the order test, val, train."""

    train: int = 20000
    val: int = 2000
    test: int = 1000


@dataclass
class OODSuite:
    """An out-of-distribution test suite: another preset, written to `ood_<name>.txt`."""

    name: str = ""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    count: int = 1000
    block_size: int | None = None
    """The determinism filter's context for this suite (0 keeps every trace); None: the dataset's."""
    beyond: int = 0
    """Keep only traces in which two consecutive steps are longer than this many tokens (0: no such
    condition): with a model trained at a context of `beyond`, a length-generalisation suite whose
    every program needs attention distances past the trained ones."""


@dataclass
class DatasetSpec:
    """A dataset folder's `dataset.yaml`."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    trace_format: Literal["demo", "m2", "2026"] = "demo"
    """Trace format given to `tinylm.lang.trace`."""
    block_size: int = 128
    """Determinism filter context (tokens); 0 keeps every trace."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    splits: SplitSizes = field(default_factory=SplitSizes)
    ood: list[OODSuite] = field(default_factory=list)
    seed: int = 0
    """Main stream seed; an OOD suite's seed is derived from it and the suite's name."""
    decontaminate: list[str] = field(default_factory=list)
    """Built dataset folders (relative to the repository root) this one must not overlap."""
    shard_size: int = 10000
    """Programs per shard: the unit of parallel work and of resume."""
    max_oversample: float = 20.0
    """Give up when a stream needs more than this many programs per requested example."""

    def validate(self) -> None:
        for key, value, low in [("block_size", self.block_size, 0), ("splits.train", self.splits.train, 0),
                                ("splits.val", self.splits.val, 0), ("splits.test", self.splits.test, 0),
                                ("shard_size", self.shard_size, 1), ("seed", self.seed, 0),
                                ("tokenizer.sample", self.tokenizer.sample, 1),
                                ("tokenizer.vocab_size", self.tokenizer.vocab_size, 2),
                                ("max_oversample", self.max_oversample, 1)]:
            if value < low:
                raise ConfigError(f"'{key}' must be >= {low}, got {value}")
        names = [suite.name for suite in self.ood]
        for i, suite in enumerate(self.ood):
            if not _NAME.match(suite.name) or names.count(suite.name) > 1:
                raise ConfigError(f"'ood[{i}].name' must be a unique lower-case name, got {suite.name!r}")
            if suite.count < 1:
                raise ConfigError(f"'ood[{i}].count' must be >= 1, got {suite.count}")
            block = self.block_size if suite.block_size is None else suite.block_size
            if block < 0 or suite.beyond < 0 or (suite.beyond and block and suite.beyond >= block):
                raise ConfigError(f"'ood[{i}]': block_size {block} and beyond {suite.beyond} must be >= 0, "
                                  f"and beyond below block_size (no trace could be kept)")
        self.generator.resolve("generator")
        for i, suite in enumerate(self.ood):
            suite.generator.resolve(f"ood[{i}].generator")
        if self.tokenizer.kind == "keyword":
            from tinylm.tokens.tokenizer import keyword_tokenizer

            try:
                keyword_tokenizer(self.tokenizer.vocab)
            except ConfigError as exc:
                raise ConfigError(f"'tokenizer.vocab': {exc}") from None





def load_spec(folder: str | Path, overrides: list[str] | tuple = ()) -> DatasetSpec:
    """Read and validate a TinyPy dataset folder's `dataset.yaml` (with dotted overrides)."""
    path = spec_file(folder)
    if is_text_spec(path):
        raise ConfigError(f"{path}: a text dataset (kind: text); only 'tinylm data build' applies to it")
    return load_config(DatasetSpec, path, overrides)


def load_dataset_spec(folder: str | Path, overrides: list[str] | tuple = ()):
    """The spec of a TinyPy (`DatasetSpec`) or text (`tinylm.data.corpus.TextDatasetSpec`) dataset folder."""
    path = spec_file(folder)
    if is_text_spec(path):
        from tinylm.data.corpus import load_text_spec

        return load_text_spec(path, overrides)
    return load_config(DatasetSpec, path, overrides)


