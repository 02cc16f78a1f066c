"""Batching from token shards: windows, ranks, determinism, padding, step masks, validation windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinylm.base.errors import DataError
from tinylm.data.batches import (
    IGNORE,
    BatchStream,
    Stage,
    TokenSplit,
    draw_starts,
    example_starts,
    make_batch,
    next_step_targets,
    offsets_after,
    open_dataset,
    read_windows,
    split_step_starts,
    step_pool,
    step_targets,
    trace_targets,
    traces_targets,
    transition_starts,
    validation_starts,
)

EOS, STEP = 0, 1
VOCAB = ["\n\n", "\n#STEP\n"] + [chr(ord("a") + i) for i in range(14)]


def trace_example(rng: np.random.Generator) -> list[int]:
    """A toy trace: a 3-token prompt, then 2-5 steps of 4 tokens continuing a count, then the terminator."""
    start, steps = int(rng.integers(0, 14)), int(rng.integers(2, 6))
    ids = [2 + (start + i) % 14 for i in range(3)]
    for s in range(steps):
        ids += [STEP] + [2 + (start + s + j) % 14 for j in range(4)]
    return ids + [EOS]


def write_dataset(folder: Path, n_train: int = 300, n_val: int = 60, seed: int = 0) -> Path:
    """A dataset folder (train.bin, val.bin, manifest.json) of toy traces, char tokenizer, uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        np.array([t for _ in range(n) for t in trace_example(rng)], dtype=np.uint8).tofile(folder / f"{split}.bin")
    tokenizer = {"kind": "char", "name": "toy", "tokens": VOCAB, "drop_spaces": False}
    (folder / "manifest.json").write_text(json.dumps(
        {"tokenizer": tokenizer, "vocab_size": len(VOCAB), "dtype": "uint8", "block_size": 32}))
    return folder


@pytest.fixture
def toy(tmp_path):
    return open_dataset(write_dataset(tmp_path / "toy"))


def split_of(ids) -> TokenSplit:
    tokens = np.asarray(ids, dtype=np.uint8)
    return TokenSplit(tokens=tokens, starts=example_starts(tokens, EOS))


def test_open_dataset_reads_ids_and_example_starts(toy):
    assert (toy.eos_id, toy.step_id, toy.vocab_size) == (EOS, STEP, len(VOCAB))
    tokens = np.asarray(toy.train.tokens)
    assert toy.train.starts[0] == 0 and len(toy.train.starts) == 300
    assert np.all(tokens[toy.train.starts[1:] - 1] == EOS)  # every start follows a terminator
    assert example_starts(np.array([5, 0, 6, 7, 0], dtype=np.uint8), 0).tolist() == [0, 2]
    assert offsets_after(np.array([5, 0, 6, 0, 7, 0], dtype=np.uint8), 0, chunk=2).tolist() == [2, 4]


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="manifest.json: missing"):
        open_dataset(tmp_path / "half")


def test_aligned_windows_start_at_example_boundaries(toy):
    rng = np.random.default_rng(0)
    starts = draw_starts(toy.train, 64, 32, 1.0, rng)
    assert np.isin(starts, toy.train.starts).all()
    assert starts.max() <= len(toy.train) - 33  # whole windows, no padding needed
    half = draw_starts(toy.train, 64, 32, 0.5, np.random.default_rng(1))
    assert np.isin(half, toy.train.starts).sum() >= 32


def test_step_aligned_windows_start_after_step_boundaries(toy):
    pool = split_step_starts(toy, toy.train)
    tokens = np.asarray(toy.train.tokens)
    assert len(pool) == (tokens == STEP).sum() and (tokens[pool - 1] == STEP).all()
    starts = draw_starts(toy.train, 64, 32, 0.25, np.random.default_rng(0), 0.5, pool)
    example, step = np.isin(starts, toy.train.starts), np.isin(starts, pool)
    assert example.sum() >= 16 and step.sum() >= 32      # random rows may also land on either
    assert starts.max() <= len(toy.train) - 33
    # without step rows the stream is the one drawn before step-aligned windows existed
    assert (draw_starts(toy.train, 64, 32, 0.5, np.random.default_rng(3))
            == draw_starts(toy.train, 64, 32, 0.5, np.random.default_rng(3), 0.0, pool)).all()


def test_random_rows_are_independent(toy):
    starts = draw_starts(toy.train, 64, 32, 0.0, np.random.default_rng(0))
    assert len(np.unique(starts)) > 60                    # not one contiguous chunk cut into rows
    assert not np.all(np.diff(starts) == 32)
    assert starts.min() >= 0 and starts.max() <= len(toy.train) - 33


def test_batches_are_deterministic_and_split_over_ranks(toy):
    def stream(rank=0, world=1, accum=1, seed=7):
        return BatchStream([Stage(toy)], 32, 8, accum, 0.5, "all", seed, rank, world)

    one, again = stream(), stream()
    b1, b2 = one.next(), again.next()
    assert all((x1 == x2).all() and (y1 == y2).all() for (x1, y1), (x2, y2) in zip(b1, b2))
    assert not (one.next()[0][0] == b1[0][0]).all()          # the next step draws new rows
    assert not (stream(seed=8).next()[0][0] == b1[0][0]).all()
    # two ranks with two micro-batches each hold exactly the rows of the single-process batch, in order
    parts = [xb for r in range(2) for xb, _ in stream(r, 2, 2).next()]
    assert [p.shape[0] for p in parts] == [2, 2, 2, 2]
    assert (np.concatenate(parts) == b1[0][0].numpy()).all()
    with pytest.raises(DataError, match="not divisible"):
        BatchStream([Stage(toy)], 32, 6, 2, 0.5, "all", 0, 0, 2)


def test_sampler_state_round_trip(toy):
    a = BatchStream([Stage(toy)], 32, 4, seed=3)
    for _ in range(5):
        a.next()
    b = BatchStream([Stage(toy)], 32, 4, seed=3)
    b.load_state_dict(a.state_dict())
    assert (a.next()[0][0] == b.next()[0][0]).all()
    with pytest.raises(DataError, match="seed"):
        BatchStream([Stage(toy)], 32, 4, seed=4).load_state_dict(a.state_dict())


def test_windows_past_the_end_are_padded_and_ignored():
    split = split_of([5, 6, 0, 7, 8, 9, 0])
    x, y = read_windows(split, np.array([3]), 6, pad_id=EOS)
    assert x.tolist() == [[7, 8, 9, 0, EOS, EOS]]
    assert y.tolist() == [[8, 9, 0, IGNORE, IGNORE, IGNORE]]


def test_step_mask_counts_only_the_next_step():
    S, E = STEP, EOS
    #        0  1  2  3  4  5  6  7  8  9 10 11
    w = [[9, S, 3, 4, S, 5, 6, 7, S, 8, 9, 2, 3],    # last step starts after input 8; ends at window end
         [9, S, 3, S, 5, 6, S, 7, E, 2, 3, 4, 5],    # last step boundary at input 6; the step ends at EOS (8)
         [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6],    # no step boundary: nothing counts
         [S, 3, 4, 5, S, 6, 6, 6, 6, 6, 6, 6, S]]    # counted up to and including the next boundary
    w = np.array(w)
    x, y = w[:, :-1], w[:, 1:]
    kept = step_targets(x, y, STEP, EOS) != IGNORE
    assert np.flatnonzero(kept[0]).tolist() == [8, 9, 10, 11]
    assert np.flatnonzero(kept[1]).tolist() == [6, 7]
    assert y[1, 7] == E                                  # the terminator closes the step and counts
    assert not kept[2].any()
    assert np.flatnonzero(kept[3]).tolist() == list(range(4, 12))
    assert y[3, 11] == S


def test_next_step_mask_counts_the_step_after_the_opening_one():
    S, E = STEP, EOS
    #        0  1  2  3  4  5  6  7  8  9 10 11
    w = [[9, 8, S, 3, 4, S, 5, 6, S, 7, 8, 9, 2],    # a prompt: its first step counts, boundary included
         [3, 4, 5, S, 6, 7, E, 2, 3, S, 4, 5, 6],    # the last step of an example: ends at its terminator
         [3, 4, E, 9, 8, S, 2, 3, 4, 5, 6, 7, 8],    # a terminator before the first boundary: nothing
         [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6]]    # no boundary: nothing
    w = np.array(w)
    x, y = w[:, :-1], w[:, 1:]
    kept = next_step_targets(x, y, STEP, EOS) != IGNORE
    assert np.flatnonzero(kept[0]).tolist() == [2, 3, 4] and y[0, 4] == S
    assert np.flatnonzero(kept[1]).tolist() == [3, 4, 5] and y[1, 5] == E
    assert not kept[2].any() and not kept[3].any()


def test_transitions_make_every_step_the_target_once_the_first_included(toy):
    """Under the next-step mask, the step-aligned pool holds one window per step of every example,
    and the windows' counted targets are exactly every step of the split, each once."""
    tokens = np.asarray(toy.val.tokens).astype(np.int64)
    pool = transition_starts(toy, toy.val)
    assert (step_pool(toy, toy.val, "next-step") == pool).all()
    assert (step_pool(toy, toy.val, "step") == split_step_starts(toy, toy.val)).all()
    assert len(pool) == (tokens == STEP).sum() and np.isin(toy.val.starts, pool).all()
    x, y = make_batch(toy, toy.val, pool, 32, "next-step")
    counted = []
    for start, row_x, row_y in zip(pool, x.numpy(), y.numpy()):
        cols = np.flatnonzero(row_y != IGNORE)
        assert len(cols) and (np.diff(cols) == 1).all() and row_x[cols[0]] == STEP
        counted.append((int(start) + int(cols[0]) + 1, row_y[cols].tolist()))
    # the steps as the split holds them: from each boundary to the next boundary or terminator
    bounds = np.flatnonzero(tokens == STEP)
    ends = np.flatnonzero((tokens == STEP) | (tokens == EOS))
    steps = [(int(b) + 1, tokens[b + 1: ends[np.searchsorted(ends, b, "right")] + 1].tolist()) for b in bounds]
    assert sorted(counted) == steps


def test_trace_mask_counts_from_the_first_step_to_the_terminator():
    S, E = STEP, EOS
    #        0  1  2  3  4  5  6  7  8  9 10 11
    w = [[9, 8, S, 3, 4, S, 5, 6, E, 7, 8, S, 2],    # prompt, two steps, the end, the next example
         [4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8],    # no step boundary: nothing counts
         [9, S, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]]    # no terminator: counted to the window's end
    w = np.array(w)
    x, y = w[:, :-1], w[:, 1:]
    kept = trace_targets(x, y, STEP, EOS) != IGNORE
    assert np.flatnonzero(kept[0]).tolist() == list(range(2, 8))
    assert y[0, 7] == E                                  # the terminator itself is a target
    assert not kept[1].any()
    assert np.flatnonzero(kept[2]).tolist() == list(range(1, 12))


def test_traces_mask_also_trains_the_trace_of_the_example_a_window_runs_into():
    S, E = STEP, EOS
    #        0  1  2  3  4  5  6  7  8  9 10 11
    w = [[9, 8, S, 3, 4, S, 5, 6, E, 7, 8, S, 2],    # two steps, the end, the next example's prompt, its step
         [4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8],    # no step boundary: nothing counts
         [3, 4, S, 5, E, 7, 8, 9, E, 2, S, 6, 7]]    # opening step (context), its end; a whole example
    w = np.array(w)                                  # without a step; a prompt and a step
    x, y = w[:, :-1], w[:, 1:]
    kept = traces_targets(x, y, STEP, EOS) != IGNORE
    assert np.flatnonzero(kept[0]).tolist() == [2, 3, 4, 5, 6, 7, 11]
    assert not kept[1].any()
    assert np.flatnonzero(kept[2]).tolist() == [2, 3, 10, 11]


def test_traces_mask_counts_what_trace_counts_and_the_packed_examples_after_it(toy):
    starts = draw_starts(toy.train, 64, 32, 0.5, np.random.default_rng(0), 0.5, split_step_starts(toy, toy.train))
    _, one = make_batch(toy, toy.train, starts, 32, "trace")
    x, every = make_batch(toy, toy.train, starts, 32, "traces")
    one, every = (one != IGNORE).numpy(), (every != IGNORE).numpy()
    assert (one <= every).all() and every.sum() > 1.5 * one.sum()
    # what only traces counts lies past a terminator input, after a step boundary of its own example
    for row, col in zip(*np.nonzero(every & ~one)):
        inputs = x[row, : col + 1].numpy()
        last_end = np.flatnonzero(inputs == EOS).max()
        assert (inputs[last_end:] == STEP).any()


def test_step_mask_batches_from_a_dataset(toy):
    starts = draw_starts(toy.train, 16, 32, 1.0, np.random.default_rng(0))
    x, y = make_batch(toy, toy.train, starts, 32, "step")
    _, y_all = make_batch(toy, toy.train, starts, 32, "all")
    kept = (y != IGNORE).numpy()
    assert 0 < kept.sum() < (y_all != IGNORE).sum()
    for row in range(16):
        cols = np.flatnonzero(kept[row])
        if len(cols):  # one contiguous span that begins right after a step boundary
            assert (np.diff(cols) == 1).all() and x[row, cols[0]] == STEP


def test_validation_windows_are_fixed_and_tile_the_split(toy):
    all_windows = validation_starts(toy.val, 32)
    assert (all_windows == np.arange(0, len(toy.val) - 1, 32)).all()
    assert (validation_starts(toy.val, 32, 100) == all_windows[:4]).all()


def test_validation_windows_follow_the_training_mix(toy):
    pool = split_step_starts(toy, toy.val)
    mixed = validation_starts(toy.val, 32, 32 * 20, 0.25, 0.5, pool)
    assert len(mixed) == 20 and (mixed == validation_starts(toy.val, 32, 32 * 20, 0.25, 0.5, pool)).all()
    assert np.isin(mixed[:5], toy.val.starts).all() and np.isin(mixed[5:15], pool).all()
    assert (mixed[15:] == np.arange(0, 5 * 32, 32)).all()
    assert mixed[:5].max() > len(toy.val) // 2           # spread over the split, not its first examples


def test_curriculum_stage_follows_the_step(tmp_path):
    a = open_dataset(write_dataset(tmp_path / "a", seed=1))
    b = open_dataset(write_dataset(tmp_path / "b", seed=2))
    stream = BatchStream([Stage(a, 3), Stage(b, None)], 32, 4)
    assert [stream.stage(i).dataset is a for i in range(6)] == [True] * 3 + [False] * 3
