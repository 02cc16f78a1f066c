"""Forgetting (tinylm.studies.forget): causal policies, compaction that equals masking, labels that stay
aligned, gradients that reach the learned scorers, and an oracle that keeps the previous step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fixture_examples

from tinylm.data.batches import IGNORE, TokenSplit, example_starts, offsets_after
from tinylm.model.gpt import GPT, POS_ENCODINGS, GPTConfig
from tinylm.studies.forget import (
    LEARNED,
    POLICIES,
    ForgetConfig,
    ForgetLM,
    TraceTokens,
    compact,
    free_tokens,
    keep_counts,
    row_noise,
    row_seeds,
    step_windows,
    top_k_keep,
)
from tinylm.tokens.tokenizer import keyword_tokenizer

TOK = keyword_tokenizer("m2")
IDS = TraceTokens.of(TOK)


def tiny_gpt(pos_encoding: str = "alibi", block_size: int = 96) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16,
                         pos_encoding=pos_encoding)).eval()


def traces(n: int = 4) -> list[np.ndarray]:
    return [TOK.encode(t + "\n\n").astype(np.int64) for t in fixture_examples("nightly", "traces")[:n]]


def split_of(examples: list[np.ndarray]) -> TokenSplit:
    tokens = np.concatenate(examples)
    return TokenSplit(tokens=tokens, starts=example_starts(tokens, TOK.eos_id))


def windows(block_size: int = 96, rows: int = 6, max_target: int = 40):
    split = split_of(traces())
    after = offsets_after(split.tokens, IDS.step_id)
    pick = after[np.linspace(2, len(after) - 2, rows).round().astype(int)]
    return step_windows(split, pick, block_size, max_target, TOK.eos_id, IDS.step_id)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_is_causal(policy, one_torch_thread):
    """A token's score, and the kept set of a context ending before a change, never depend on later tokens."""
    lm = ForgetLM(tiny_gpt(), ForgetConfig(policy=policy, keep_ratio=0.4), IDS).eval()
    x, _, n_ctx, _ = windows()
    changed = x.clone()
    j = 50
    changed[:, j:] = torch.randint(0, TOK.vocab_size, changed[:, j:].shape, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))  # the same draws for both
    emb = lm.gpt.wte
    a, b = lm.policy(x, emb(x), noise), lm.policy(changed, emb(changed), noise)
    torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
    short = torch.full_like(n_ctx, j)
    seeds = row_seeds((7, r) for r in range(len(x)))
    keep_a = lm.select(x, short, seeds)[0]
    keep_b = lm.select(changed, short, seeds)[0]
    assert torch.equal(keep_a, keep_b)
    assert not keep_a[:, j:].any()  # nothing past the context is a kept context token


def test_keep_counts_and_top_k_keep_the_recent_tokens_and_the_ratio():
    n_ctx = torch.tensor([10, 3, 1])
    k = keep_counts(n_ctx, 0.25, recent=2)
    assert k.tolist() == [3, 2, 1]  # ceil(2.5) = 3; at least the 2 recent ones; at most the context
    budget = keep_counts(torch.tensor([40, 10, 3]), 0.25, recent=1, capacity=40)
    assert budget.tolist() == [10, 10, 3]  # a fixed budget of ceil(0.25 * 40); a shorter context kept whole
    free, forced = free_tokens(12, n_ctx, recent=2)
    keep = top_k_keep(torch.arange(12.0).flip(0).expand(3, 12), free, forced, k)  # earlier tokens score higher
    assert keep.sum(1).tolist() == k.tolist()
    assert keep[0].nonzero().flatten().tolist() == [0, 8, 9]
    assert keep[1].nonzero().flatten().tolist() == [1, 2]


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_compacted_forward_equals_the_full_forward_with_the_dropped_keys_masked(pos_encoding, one_torch_thread):
    """Attention over the kept positions, with their original position ids, is attention over every
    position with the dropped keys hidden: the kept positions' logits agree."""
    gpt = tiny_gpt(pos_encoding)
    x = torch.randint(0, TOK.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    keep = torch.rand(3, 40, generator=torch.Generator().manual_seed(1)) < 0.5
    keep[:, 0] = keep[:, -6:] = True
    c = compact(keep, torch.full((3,), 40), torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        small, _ = gpt(c.gather(x, 0), positions=c.index)
        full, _ = gpt(x, key_bias=torch.zeros(3, 40).masked_fill(~keep, -1e9))
    for b in range(3):
        n = int(c.valid[b].sum())
        torch.testing.assert_close(small[b, :n], full[b, c.index[b, :n]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pos_encoding", ["alibi", "rope", "relative"])
def test_compacted_decoding_with_a_cache_equals_one_forward(pos_encoding, one_torch_thread):
    """Explicit positions held in the KV cache: prefill then one token at a time equals the whole
    compacted sequence at once (left padding included)."""
    gpt = tiny_gpt(pos_encoding)
    x = torch.randint(0, TOK.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))
    pos = torch.tensor([[0, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17]] * 2)
    with torch.no_grad():
        whole, _ = gpt(x, positions=pos)
        cache = gpt.new_cache(2, 12)
        first, _ = gpt(x[:, :6], positions=pos[:, :6], cache=cache)
        rest = [gpt(x[:, t:t + 1], positions=pos[:, t:t + 1], cache=cache, last=True)[0] for t in range(6, 12)]
    torch.testing.assert_close(torch.cat([first] + rest, dim=1), whole, rtol=1e-4, atol=1e-5)


def test_identity_runs_the_plain_model_and_labels_are_the_target_tokens(one_torch_thread):
    x, y, n_ctx, t_len = windows()
    gpt = tiny_gpt()
    with torch.no_grad():
        plain, _ = gpt(x)
        for policy in ("identity", "random", "oracle"):
            lm = ForgetLM(gpt, ForgetConfig(policy=policy, keep_ratio=0.3), IDS).eval()
            logits, labels, extra, kept = lm(x, y, n_ctx, t_len, row_seeds((0, r) for r in range(len(x))))
            for b in range(len(x)):
                counted = labels[b][labels[b] != IGNORE]
                n, t = int(n_ctx[b]), int(t_len[b])
                assert counted.tolist() == x[b, n:n + t].tolist()  # the next step, every token once
                assert x[b, n - 1] == IDS.step_id
                assert x[b, n + t - 1] in (IDS.step_id, TOK.eos_id) or t == 40
            if policy == "identity":
                assert torch.equal(kept, n_ctx)
                at = labels != IGNORE
                torch.testing.assert_close(logits[at], plain[y != IGNORE], rtol=1e-4, atol=1e-5)
            else:
                assert torch.equal(kept, keep_counts(n_ctx, 0.3, 1, lm.capacity))
            assert extra == 0


@pytest.mark.parametrize("policy", LEARNED)
@pytest.mark.parametrize("estimator", ["straight_through", "reinforce", "imitate"])
def test_gradients_reach_the_learned_scorer(policy, estimator, one_torch_thread):
    torch.manual_seed(0)
    x, y, n_ctx, t_len = windows()
    for freeze in (False, True):
        lm = ForgetLM(tiny_gpt(), ForgetConfig(policy=policy, keep_ratio=0.3, estimator=estimator, freeze_lm=freeze,
                                               epsilon=[0.1, 0.0], temperature=[2.0, 0.5]), IDS).train()
        logits, labels, extra, _ = lm(x, y, n_ctx, t_len, progress=0.5)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        (loss + extra).backward()
        grads = [p.grad for p in lm.policy.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        assert (lm.gpt.wte.weight.grad is None) == freeze
        if estimator == "reinforce":
            assert torch.isfinite(lm.baseline)


@pytest.mark.parametrize("policy", ["cnn", "gru"])
def test_a_scorer_trained_to_imitate_the_oracle_learns_its_mask(policy, one_torch_thread):
    # the positive control: a learned scorer (with context: the MLP sees one token) and its inputs can
    # express the mask the oracle keeps, so a learned policy that misses it is not limited by them
    torch.manual_seed(0)
    x, y, n_ctx, t_len = windows(rows=12)
    cfg = ForgetConfig(policy=policy, keep_ratio=0.3, estimator="imitate", freeze_lm=True, hidden=32)
    lm = ForgetLM(tiny_gpt(), cfg, IDS)
    oracle = ForgetLM(lm.gpt, ForgetConfig(policy="oracle", keep_ratio=0.3), IDS).eval()
    free, _ = free_tokens(x.size(1), n_ctx, cfg.recent)

    def agreement() -> float:
        lm.eval()
        with torch.no_grad():
            same = lm.select(x, n_ctx)[0] == oracle.select(x, n_ctx)[0]
        lm.train()
        return float(same[free].float().mean())

    before = agreement()
    optimizer = torch.optim.Adam(lm.policy.parameters(), lr=1e-2)
    for _ in range(300):
        extra = lm(x, y, n_ctx, t_len)[2]
        optimizer.zero_grad()
        extra.backward()
        optimizer.step()
    assert before < 0.9 and agreement() > 0.99


def test_the_oracle_keeps_the_previous_step_and_first_its_state_line():
    trace = traces(1)[0]
    steps = np.flatnonzero(trace == IDS.step_id)
    n = int(steps[4]) + 1  # context: the prompt and four steps, ending with a step token
    prev = int(steps[3])  # the step token that opened the last complete step
    lm = ForgetLM(tiny_gpt(block_size=1024), ForgetConfig(policy="oracle"), IDS).eval()
    x = torch.from_numpy(trace[None, :n])
    free, forced = free_tokens(n, torch.tensor([n]), 1)
    scores = lm.policy(x, None)
    keep = top_k_keep(scores, free, forced, torch.tensor([n - prev]))[0]
    assert keep.nonzero().flatten().tolist() == list(range(prev, n))  # exactly the previous step
    state_line = [i for i in range(prev, n) if TOK.token_strings([int(trace[i])])[0] == "@"][0]
    line_end = next(i for i in range(state_line, n) if i + 1 == n or TOK.token_strings([int(trace[i])])[0].endswith("\n"))
    small = top_k_keep(scores, free, forced, torch.tensor([line_end - state_line + 2]))[0]
    kept = TOK.decode(trace[:n][small.numpy()].tolist())
    assert kept.startswith("@") and "$" in kept and kept.endswith("#STEP\n")


def test_step_windows_cut_the_context_from_the_left_and_stop_at_the_step_end():
    split = split_of(traces(2))
    after = offsets_after(split.tokens, IDS.step_id)
    x, y, n_ctx, t_len = step_windows(split, after, 64, 40, TOK.eos_id, IDS.step_id)
    assert (n_ctx <= 24).all() and (n_ctx >= 1).all()
    for b, p in enumerate(after):
        n = int(n_ctx[b])
        assert x[b, :n].tolist() == split.tokens[p - n:p].tolist()
        example = split.starts[np.searchsorted(split.starts, p, side="right") - 1]
        assert p - n >= example  # never reaches into the example before
        counted = y[b][y[b] != IGNORE].tolist()
        assert counted == split.tokens[p:p + len(counted)].tolist()
        assert counted[-1] in (IDS.step_id, TOK.eos_id) or len(counted) == 40


def test_a_rows_noise_depends_on_its_seed_only_not_on_its_batch(one_torch_thread):
    """The random policy keeps the same tokens of a row alone or in a wider batch; Gumbel draws too."""
    x, y, n_ctx, t_len = windows()
    seeds = row_seeds((3, r) for r in range(len(x)))
    lm = ForgetLM(tiny_gpt(), ForgetConfig(policy="random", keep_ratio=0.4), IDS).eval()
    together = lm.select(x, n_ctx, seeds)[0]
    for b in range(len(x)):
        n = int(n_ctx[b])
        alone = lm.select(x[b:b + 1, :n], n_ctx[b:b + 1], seeds[b:b + 1])[0]
        assert torch.equal(alone[0], together[b, :n])
    assert not torch.equal(lm.select(x, n_ctx, row_seeds((4, r) for r in range(len(x))))[0], together)
    noise = row_noise(seeds, (len(x), 20), 96, "cpu")
    torch.testing.assert_close(noise, row_noise(seeds, (len(x), 96), 96, "cpu")[:, :20], rtol=0, atol=0)


def test_keep_profile_measures_what_a_policy_keeps_where_its_budget_drops(one_torch_thread):
    """The oracle keeps all of the previous step, random a part of it, identity drops nothing; a
    learned scorer's score-position correlation is reported, a rule's is not."""
    from types import SimpleNamespace

    from tinylm.evaluate.scoring import split_example
    from tinylm.studies.forget_eval import keep_profile

    examples = []
    for text in fixture_examples("nightly", "traces")[:6]:
        prompt, target = split_example(text + "\n\n")
        examples.append(SimpleNamespace(prompt_ids=TOK.encode(prompt).tolist(), target_ids=TOK.encode(target).tolist()))
    profile = {}
    for policy in ("identity", "oracle", "random", "mlp"):
        lm = ForgetLM(tiny_gpt(block_size=512), ForgetConfig(policy=policy, keep_ratio=0.25, max_target=80), IDS)
        profile[policy] = keep_profile(lm.eval(), examples, TOK.eos_id, batch_size=8)
    assert profile["identity"] == {"dropping_share": 0.0, "previous_step_kept": None, "recent_kept": None,
                                   "score_position_corr": None}
    assert 0 < profile["oracle"]["dropping_share"] == profile["random"]["dropping_share"] < 1
    assert profile["oracle"]["previous_step_kept"] == 1.0  # a budget of ceil(0.25 * 432) = 108 holds a step (<= 95)
    assert 0 < profile["random"]["previous_step_kept"] < 1
    assert profile["oracle"]["score_position_corr"] is None and profile["random"]["score_position_corr"] is None
    assert -1 <= profile["mlp"]["score_position_corr"] <= 1
