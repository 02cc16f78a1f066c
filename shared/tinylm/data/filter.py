"""Traces → kept traces: the determinism filter.

A model trained with a context of `block_size` tokens must see each step together with the one
before it, so the reference dropped every example in which two consecutive steps are longer than
that. Its rule, on the tokens of `example + "\\n\\n"`:

    boundaries = [positions of the boundary token] + [number of tokens]
    drop if any boundaries[i] - boundaries[i - 2] > block_size, for i >= 2

The boundary token depends on the family (`BOUNDARY_TOKENS`): the 2025 scripts counted from each
`"# code\\n"` (so the first pair starts at the program), the 2026 script from each `"\\n#STEP\\n"`
(the program before the first step is not counted).

`keep_mask` decides a whole corpus of token ids at once with numpy; `keep_ids` decides one
example's ids; `keep_text` decides one example's text with any token-count function. `keep_mask`
and `keep_text` also select the other way (`beyond`): only examples in which some two consecutive
steps are longer than `beyond` tokens, the traces a length-generalisation suite needs (a model
trained at a context of `beyond` meets distances it never trained on in every one of them).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path
from tinylm.lang.format import EXAMPLE_END, STEP, iter_examples

BOUNDARY_TOKENS = {"demo": "# code\n", "m2": "# code\n", "alpha": STEP, "beta": STEP}
"""The token each keyword vocabulary's reference filter counted from."""
FORMAT_BOUNDARIES = {"demo": BOUNDARY_TOKENS["demo"], "m2": BOUNDARY_TOKENS["m2"],
                     "2026": BOUNDARY_TOKENS["alpha"]}
"""The same by trace format, for dataset builds."""


def _kept(boundaries: np.ndarray, block_size: int, beyond: int) -> bool:
    spans = boundaries[2:] - boundaries[:-2]
    return not (spans > block_size).any() and (beyond == 0 or bool((spans > beyond).any()))


def keep_ids(ids: np.ndarray, boundary_id: int, block_size: int) -> bool:
    """Whether one example survives; `ids` are the tokens of the example followed by "\\n\\n"."""
    ids = np.asarray(ids)
    boundaries = np.append(np.flatnonzero(ids == boundary_id), ids.size)
    return _kept(boundaries, block_size, beyond=0)


def keep_mask(ids: np.ndarray, *, boundary_id: int, end_id: int, block_size: int, beyond: int = 0) -> np.ndarray:
    """One bool per example of a corpus laid out as the `.bin` files are: each example's ids
    followed by the end token ("\\n\\n"), concatenated. Tokens after the last end are ignored.
    `beyond` > 0 also drops every example whose consecutive steps all fit in `beyond` tokens."""
    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == end_id) + 1  # (E,) exclusive end of each example
    starts = np.concatenate(([0], ends[:-1]))
    marks = np.flatnonzero(ids[: ends[-1] if ends.size else 0] == boundary_id)
    # Each example's boundaries are its marks then its end; example numbers keep them apart when a
    # mark sits at the first token of an example, i.e. at the previous example's end.
    example = np.concatenate((np.searchsorted(starts, marks, side="right") - 1, np.arange(ends.size)))
    position = np.concatenate((marks, ends))
    order = np.lexsort((position, example))
    example, position = example[order], position[order]
    same = example[2:] == example[:-2]
    spans = position[2:] - position[:-2]
    mask = np.ones(ends.size, dtype=bool)
    mask[example[2:][same & (spans > block_size)]] = False
    if beyond:
        reaching = np.zeros(ends.size, dtype=bool)
        reaching[example[2:][same & (spans > beyond)]] = True
        mask &= reaching
    return mask


def keep_text(example: str, *, boundary: str, count_tokens: Callable[[str], int], block_size: int,
              beyond: int = 0) -> bool:
    """Whether one example survives, counting tokens with `count_tokens` on the text between
    boundaries (exact for tokenizers, like the reference ones, whose tokens never span a boundary)."""
    pieces = (example + EXAMPLE_END).split(boundary)
    # Boundary k follows pieces[0..k] and k boundary tokens; the end follows every piece and all
    # boundaries. Both are the running sum of (piece tokens + 1), less one: only differences matter.
    boundaries = np.fromiter(itertools.accumulate(count_tokens(p) + 1 for p in pieces), dtype=np.int64)
    return _kept(boundaries, block_size, beyond)


def filter_examples(examples: Iterable[str], tokenizer, *, boundary: str, block_size: int,
                    batch: int = 4096) -> Iterable[tuple[str, bool]]:
    """(example, kept) for each example, tokenizing `batch` examples at a time."""
    boundary_id = tokenizer.token_id(boundary)
    end_id = tokenizer.token_id(EXAMPLE_END)
    examples = iter(examples)
    while chunk := list(itertools.islice(examples, batch)):
        ids = tokenizer.encode_examples(chunk)
        mask = keep_mask(ids, boundary_id=boundary_id, end_id=end_id, block_size=block_size)
        if mask.size != len(chunk):
            raise DataError(f"an example holds a blank line: {mask.size} ends for {len(chunk)} examples")
        yield from zip(chunk, mask.tolist())


def filter_file(in_path: str | Path, out_path: str | Path, *, vocab: str, block_size: int,
                boundary: str | None = None) -> Counter:
    """Keep the examples of `in_path` that pass the filter, in `out_path`; counts 'examples', 'kept'."""
    from tinylm.tokens.tokenizer import keyword_tokenizer

    if vocab not in BOUNDARY_TOKENS:
        raise ConfigError(f"unknown vocabulary '{vocab}'; expected one of {', '.join(BOUNDARY_TOKENS)}")
    if block_size < 1:
        raise ConfigError(f"block_size must be positive, got {block_size}")
    tokenizer = keyword_tokenizer(vocab)
    counts: Counter = Counter(examples=0, kept=0)
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for example, kept in filter_examples(iter_examples(in_path), tokenizer,
                                             boundary=boundary or BOUNDARY_TOKENS[vocab], block_size=block_size):
            counts["examples"] += 1
            if kept:
                counts["kept"] += 1
                out.write(example + EXAMPLE_END)
    return counts


def cli(argv: list[str]) -> int:
    parser = ArgumentParser(prog="tinylm filter", description="Drop traces whose consecutive steps "
                            "do not fit together in the model's context (the determinism filter).")
    parser.add_argument("--block-size", type=int, required=True, help="context length in tokens")
    parser.add_argument("--vocab", required=True, choices=list(BOUNDARY_TOKENS), help="keyword vocabulary")
    parser.add_argument("traces", help="input: traces separated by blank lines")
    parser.add_argument("kept", help="output: the traces that pass")
    args = parser.parse_args(argv)
    counts = filter_file(args.traces, args.kept, vocab=args.vocab, block_size=args.block_size)
    dropped = counts["examples"] - counts["kept"]
    print(f"kept {counts['kept']:,} of {counts['examples']:,} traces -> {args.kept} "
          f"(dropped {dropped:,}: two consecutive steps over {args.block_size} tokens)")
    return 0
