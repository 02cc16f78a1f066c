"""Streams of programs: a stream's seed per suite, and `Mixture`, several generators sharing one
stream in fixed proportions. Program i of a stream depends only on (generator, seed, i)."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np


def stream_seed(seed: int, suite: str) -> int:
    """An OOD suite's seed: a 31-bit hash of the dataset seed and the suite name."""
    digest = hashlib.blake2b(f"{seed}:{suite}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


MIX_BLOCK = 256
"""Programs per mixture block; part of the determinism contract (changing it changes every mixture)."""


@dataclass
class Mixture:
    """Generators sharing one stream in proportion to their weights (a `generator.mix` section).

    The stream is cut into blocks of `MIX_BLOCK` program indices. The programs of component k in
    blocks 0..b-1 number floor(b * MIX_BLOCK * F[k]) - floor(b * MIX_BLOCK * F[k-1]), F being the
    cumulative share of the weights, so every block holds each component's share (rounded, the
    rounding carried to later blocks); a hash of (seed, block) shuffles which index gets which
    component. Component k's programs are consecutive programs of its own stream, seeded by
    `stream_seed(seed, "mix[k]")`: program i depends only on (mixture, seed, i), every component's
    program is generated once, and any range of a stream holds the weights' proportions to
    within one program per component and block.
    """

    presets: list[str]
    weights: list[float]
    generators: list[Any]      # tinylm.lang.spec.GeneratorSpec, one per component

    def _drawn_before(self, block: int) -> np.ndarray:
        """(K,) programs of each component in blocks [0, block)."""
        total = sum(self.weights)
        shares = [sum(self.weights[:k + 1]) / total for k in range(len(self.weights) - 1)] + [1.0]
        return np.diff([0] + [math.floor(block * MIX_BLOCK * f) for f in shares])

    def _block_order(self, seed: int, block: int) -> np.ndarray:
        """(MIX_BLOCK,) the component of each index of a block."""
        counts = self._drawn_before(block + 1) - self._drawn_before(block)
        order = [k for k, n in enumerate(counts) for _ in range(n)]
        digest = hashlib.blake2b(f"mix:{seed}:{block}".encode(), digest_size=16).digest()
        random.Random(int.from_bytes(digest, "little")).shuffle(order)
        return np.asarray(order, dtype=np.int64)

    def programs(self, seed: int, start: int, count: int) -> tuple[list[str], list[int]]:
        """Programs start..start+count-1 of the stream and how many came from each component."""
        from tinylm.lang.generate import generate_programs

        first, end = start // MIX_BLOCK, start + count
        blocks = range(first, -(-end // MIX_BLOCK))
        order = np.concatenate([np.zeros(0, np.int64), *(self._block_order(seed, b) for b in blocks)])
        before = self._drawn_before(first) + np.bincount(order[:start - first * MIX_BLOCK], minlength=len(self.weights))
        order = order[start - first * MIX_BLOCK:end - first * MIX_BLOCK]
        parts, drawn = [], []
        for k, generator in enumerate(self.generators):
            n = int((order == k).sum())
            parts.append(iter(generate_programs(generator, stream_seed(seed, f"mix[{k}]"), int(before[k]), n)))
            drawn.append(n)
        return [next(parts[k]) for k in order], drawn


def stream_programs(generator, seed: int, start: int, count: int) -> tuple[list[str], list[int]]:
    """Programs start..start+count-1 of a stream (one generator or a `Mixture`), and how many
    came from each of its components."""
    if isinstance(generator, Mixture):
        return generator.programs(seed, start, count)
    from tinylm.lang.generate import generate_programs

    return generate_programs(generator, seed, start, count), [count]
