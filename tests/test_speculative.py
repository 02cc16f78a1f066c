"""Prompt-lookup speculative decoding: the drafts, and greedy generations token for token equal to
one-token greedy decoding under both windows (accepted and rejected drafts, budgets and terminators
inside drafts, refilled rows), with fewer decoding steps."""

from __future__ import annotations

import pytest
import torch
from test_decode import EOS, STEP, V, prompts, sharp_model

from tinylm.base.errors import ConfigError
from tinylm.decode.decoder import Decoder, draft_tokens
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.evaluate.scoring import EvalConfig
from tinylm.model.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def drafts_of(rows: list[list[int]], k: int) -> list[list[int]]:
    """draft_tokens on left-aligned rows, padded with 9s; the drafts cut at their lengths."""
    tokens = torch.full((len(rows), max(map(len, rows)) + 3), 9)
    for b, row in enumerate(rows):
        tokens[b, :len(row)] = torch.tensor(row)
    drafts, n = draft_tokens(tokens, torch.tensor([len(r) for r in rows]), k)
    assert (drafts[torch.arange(k)[None] >= n[:, None]] == 0).all()
    return [d[:m].tolist() for d, m in zip(drafts, n.tolist())]


# -----------------------------------------------------------------------------
# Drafting


def test_draft_copies_what_followed_the_most_recent_occurrence_of_the_last_three_tokens():
    assert drafts_of([[1, 2, 3, 4, 5, 1, 2, 3, 6, 7, 1, 2, 3]], k=2) == [[6, 7]]


def test_draft_prefers_the_longest_ngram_over_a_more_recent_shorter_one():
    # "2 3" last occurred after 8 (followed by 5), but "1 2 3" only before 4
    assert drafts_of([[1, 2, 3, 4, 8, 2, 3, 5, 1, 2, 3]], k=1) == [[4]]


def test_draft_falls_back_to_two_tokens_then_one():
    assert drafts_of([[4, 2, 3, 6, 1, 2, 3]], k=3) == [[6, 1, 2]]
    assert drafts_of([[5, 3, 8, 0, 1, 2, 3]], k=2) == [[8, 0]]


def test_draft_stops_at_the_row_end_and_at_k():
    assert drafts_of([[1, 2, 1, 2]], k=5) == [[1, 2]]  # "1 2" at 0 is followed by the row's own last two tokens
    assert drafts_of([[7, 7, 7, 7, 7]], k=3) == [[7]]  # most recent "7 7 7" is at 1: only the last token follows


def test_no_draft_without_an_earlier_occurrence_and_rows_are_independent():
    assert drafts_of([[1, 2, 3], [9], [3, 9, 4, 3]], k=2) == [[], [], [9, 4]]


def test_tokens_past_the_row_length_are_never_matched():
    tokens = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 4]])
    drafts, n = draft_tokens(tokens, torch.tensor([4]), 3)
    assert n.tolist() == [0] and drafts.tolist() == [[0, 0, 0]]


# -----------------------------------------------------------------------------
# Speculative greedy == one-token greedy


def random_model(pos: str = "learned", block_size: int = 16, seed: int = 0) -> GPT:
    """A tiny model in eval mode with weights large enough that logits rarely tie."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=16,
                          pos_encoding=pos)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def looping_model(pos: str = "learned", block_size: int = 16, seed: int = 0) -> GPT:
    """A tiny model whose greedy output falls into loops (the next token mostly follows from the
    current one), so that copied drafts are often right and sometimes wrong."""
    model = random_model(pos, block_size, seed)
    with torch.no_grad():
        model.wte.weight.mul_(3.0)
        model.lm_head.weight.copy_(model.wte.weight.roll(1, dims=0))
    return model


def both(model, ps, window: str = "reference", speculate: int = 4, **kw):
    """(one-token greedy, speculative greedy) generations of the same call."""
    plain = generate(model, ps, GenerateConfig(window=window, speculate=0), step_id=STEP, **kw)
    spec = generate(model, ps, GenerateConfig(window=window, speculate=speculate), step_id=STEP, **kw)
    return plain, spec


def repetitive_prompts() -> list[list[int]]:
    ps = prompts([3, 9, 15, 20, 6], seed=1)
    ps[1] = list(range(5, 14))
    ps[3] = [7, 21, 15, 16] * 5
    ps[4] = [7, 21, 15, 7, 21, 15]
    return ps


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "distance_bias", "relative_heads"])
@pytest.mark.parametrize("window,block_size", [("reference", 40), ("step-anchored", 16)])
def test_speculation_equals_plain_greedy_and_accepts_drafts(pos, window, block_size):
    model = looping_model(pos, block_size)
    ps = repetitive_prompts()  # mixed lengths, some already past a 16-token window
    budgets = [40, 7, 33, 40, 25]
    plain, spec = both(model, ps, window, max_new_tokens=budgets)
    assert spec.ids == plain.ids
    assert [len(x) for x in spec.ids] == budgets
    assert spec.accepted > 0 and spec.steps < plain.steps  # drafts were accepted: fewer steps
    assert spec.accepted < spec.drafted  # and some were rejected
    # two rows at a time: finished rows take the waiting prompts mid-decode
    assert both(model, ps, window, max_new_tokens=budgets, rows=2)[1].ids == plain.ids


@pytest.mark.parametrize("window,block_size", [("reference", 40), ("step-anchored", 16), ("rolling", 16)])
@pytest.mark.parametrize("speculate", [1, 3, 8])
def test_speculation_equals_plain_greedy_on_random_prompts(window, block_size, speculate):
    model = random_model("rope", block_size, seed=4)
    with torch.no_grad():
        model.lm_head.bias[STEP] += 2.0  # step boundaries now and then, for the anchors
    ps = prompts([2, 5, 11, 18, 4, 9], seed=7)
    plain, spec = both(model, ps, window, speculate, max_new_tokens=[30, 12, 30, 5, 30, 21], rows=4)
    assert spec.ids == plain.ids
    assert spec.drafted > spec.accepted  # mostly wrong guesses, all rejected cleanly


@pytest.mark.parametrize("window,block_size", [("reference", 40), ("step-anchored", 16)])
def test_budgets_ending_inside_a_draft(window, block_size):
    model = looping_model("learned", block_size, seed=1)
    ps = [[7, 21, 15, 16] * 3] * 12
    budgets = list(range(1, 13))
    plain, spec = both(model, ps, window, speculate=6, max_new_tokens=budgets)
    assert spec.ids == plain.ids
    assert [len(x) for x in spec.ids] == budgets
    assert spec.accepted > 0


def test_append_cuts_after_the_terminator_and_at_the_budget():
    dec = Decoder(random_model())
    state = dec.start([[1, 2], [3], [4, 5, 6]], [5, 2, 5])
    ids = torch.tensor([[7, EOS, 8, 9], [7, 8, 9, 10], [7, 8, EOS, 10]])
    with torch.inference_mode():  # the state's tensors are inference tensors
        Decoder.append(state, ids, torch.tensor([4, 4, 2]), EOS)
    assert [state.generated(b) for b in range(3)] == [[7, EOS], [7, 8], [7, 8]]
    assert state.done.tolist() == [True, True, False]  # the third row's terminator was not accepted


@pytest.mark.parametrize("window,block_size", [("reference", 40), ("step-anchored", 16)])
def test_terminator_inside_an_accepted_draft(window, block_size):
    model = looping_model("rope", block_size)
    ps = repetitive_prompts()
    free = generate(model, ps, GenerateConfig(speculate=0), max_new_tokens=30).ids
    several_per_step = False
    for eos in sorted({t for row in free for t in row}):  # every token the rows emit, as terminator
        plain, spec = both(model, ps, window, eos_id=eos, max_new_tokens=30)
        assert spec.ids == plain.ids
        for row in spec.ids:
            assert eos not in row[:-1]
        several_per_step |= spec.accepted > 0 and spec.steps < plain.steps
    assert several_per_step


# -----------------------------------------------------------------------------
# Only greedy speculates; settings


def test_sampling_ignores_speculation():
    model = sharp_model(seed=9)
    ps = prompts([4, 6], seed=1)
    cfg = dict(max_new_tokens=30, temperature=1.2, seed=11)
    a = generate(model, ps, GenerateConfig(**cfg, speculate=0))
    b = generate(model, ps, GenerateConfig(**cfg, speculate=4))
    assert a.ids == b.ids and a.steps == b.steps and b.drafted == 0


def test_speculate_must_be_nonnegative_and_inside_the_window():
    with pytest.raises(ConfigError, match="speculate"):
        GenerateConfig(speculate=-1).validate()
    with pytest.raises(ConfigError, match="speculate"):
        EvalConfig(decoding=GenerateConfig(speculate=-1)).validate()
    with pytest.raises(ConfigError, match="speculate"):
        Decoder(sharp_model(), speculate=16)  # block_size 16
    assert EvalConfig(decoding=GenerateConfig(speculate=2)).generate_config(0).speculate == 2
