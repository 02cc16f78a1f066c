"""Decoding: cached batched decoding == full recomputation under the three window semantics, the golden
greedy generations of the reference model (with and without speculation), samplers, beam search,
the command line. Speculative decoding itself: test_speculative.py."""

from __future__ import annotations

import contextlib
import itertools
import json
from dataclasses import asdict

import pytest
import torch
from conftest import golden_dir

from tinylm.base.errors import ConfigError
from tinylm.decode.decoder import Decoder, on_threads
from tinylm.decode.sampling import Sampler, filter_logits
from tinylm.decode.strategies import GenerateConfig, beam_search, generate
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, POS_ENCODINGS, GPTConfig

V, STEP, EOS = 24, 2, 11


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sharp_model(pos: str = "learned", seed: int = 0, vocab: int = V, n_layer: int = 2, **kw) -> GPT:
    """A tiny model in eval mode with weights large enough that logits rarely tie."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, block_size=16, n_layer=n_layer, n_head=2, n_embd=16, pos_encoding=pos,
                    t5_num_buckets=8, t5_max_distance=16, **kw)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def prompts(lengths, seed=0, vocab=V):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


@torch.no_grad()
def naive_rolling(model, prompt, n_new):
    """Decode one row by full recomputation with sliding-window attention over the whole row."""
    seq = list(prompt)
    for _ in range(n_new):
        logits, _ = model(torch.tensor([seq]), window=model.config.block_size)
        seq.append(int(torch.softmax(logits[0, -1], -1).argmax()))
    return seq[len(prompt):]


@torch.no_grad()
def naive(model, prompt, n_new, *, anchored=False, eos=None, W=None):
    """Decode one row by full recomputation: the window the semantics prescribes, positions from 0."""
    W = W or model.config.block_size
    seq, start = list(prompt), 0
    for _ in range(n_new):
        L = len(seq)
        if anchored:
            if L - start > W:
                bounds = [i for i, t in enumerate(seq[:L - 1]) if t == STEP]
                cands = ([bounds[-2] + 1] if len(bounds) >= 2 else []) + ([bounds[-1] + 1] if bounds else [])
                start = next((s for s in cands if L - s <= W), L - W // 2)
        else:
            start = max(0, L - W)
        logits, _ = model(torch.tensor([seq[start:]]))
        seq.append(int(torch.softmax(logits[0, -1], -1).argmax()))
        if seq[-1] == eos:
            break
    return seq[len(prompt):]


# -----------------------------------------------------------------------------
# Cached decoding == full recomputation


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_reference_window_equals_full_recomputation(pos):
    model = sharp_model(pos)
    ps = prompts([3, 9, 15, 20])  # one prompt already longer than the window (16)
    budgets = [30, 4, 25, 12]  # rows stop at different steps; most cross the window
    want = [naive(model, p, n) for p, n in zip(ps, budgets)]
    assert generate(model, ps, max_new_tokens=budgets).ids == want
    # two rows at a time: finished rows take the waiting prompts mid-decode (continuous batching)
    assert generate(model, ps, max_new_tokens=budgets, rows=2).ids == want
    with torch_threads(2):  # the recomputed windows split between two threads
        assert generate(model, ps, max_new_tokens=budgets).ids == want


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_on_threads_computes_slices_side_by_side_and_restores_torch_threads():
    model = sharp_model("alibi", seed=2)
    x = torch.tensor(prompts([16] * 5, seed=3))

    @torch.inference_mode()
    def last_logits(rows):
        return model(rows, last=True)[0]

    with torch_threads(2):
        torch.testing.assert_close(on_threads(last_logits, x, 3), last_logits(x))
        torch.testing.assert_close(on_threads(last_logits, x[:1], 4), last_logits(x[:1]))
        assert torch.get_num_threads() == 2

        def fails(rows):
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            on_threads(fails, x, 2)
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_last_position_forward_equals_the_last_row_of_the_full_forward(pos):
    model = sharp_model(pos, seed=6)
    ids = torch.tensor(prompts([12, 12], seed=4))
    with torch.no_grad():
        full = model(ids)[0][:, -1:]
        torch.testing.assert_close(model(ids, last=True)[0], full)
        cache = model.new_cache(2, 16)  # and through a cache: every layer still caches every position
        model(ids[:, :5], cache=cache)
        torch.testing.assert_close(model(ids[:, 5:], cache=cache, last=True)[0], full)
        longer = torch.cat([ids, ids[:, :1]], dim=1)  # 13 tokens: the next step reads the cached keys
        torch.testing.assert_close(model(longer[:, -1:], cache=cache)[0], model(longer)[0][:, -1:])


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "distance_bias", "relative_heads"])
def test_step_anchored_window_equals_its_full_recomputation(pos):
    model = sharp_model(pos, seed=1)
    with torch.no_grad():
        model.lm_head.bias[STEP] += 2.0  # emit step boundaries now and then
    ps = prompts([5, 12, 22], seed=3)
    ps[1][4] = ps[2][6] = ps[2][15] = STEP
    cfg = GenerateConfig(max_new_tokens=40, window="step-anchored")
    got = generate(model, ps, cfg, step_id=STEP).ids
    want = [naive(model, p, 40, anchored=True) for p in ps]
    assert got == want
    assert generate(model, ps + ps[:1], cfg, step_id=STEP, max_new_tokens=[40, 40, 40, 9], rows=2).ids == \
        want + [want[0][:9]]
    assert sum(t == STEP for row in got for t in row) >= 3  # the anchors were exercised


@pytest.mark.parametrize("pos", [p for p in POS_ENCODINGS if p not in ("learned", "sinusoidal")])
def test_rolling_window_equals_full_sliding_window_recomputation(pos):
    model = sharp_model(pos, seed=2)
    ps = prompts([3, 9, 20, 31], seed=8)  # two prompts longer than the window (16)
    budgets = [50, 7, 41, 30]  # several times the window: the cache drops its oldest slots again and again
    want = [naive_rolling(model, p, n) for p, n in zip(ps, budgets)]
    for speculate in (0, 4):
        cfg = GenerateConfig(window="rolling", speculate=speculate)
        assert generate(model, ps, cfg, max_new_tokens=budgets).ids == want
        assert generate(model, ps, cfg, max_new_tokens=budgets, rows=2).ids == want


def test_sliding_window_mask_limits_what_each_position_sees():
    ids = torch.tensor(prompts([40], seed=9))
    with torch.no_grad():
        one_layer = sharp_model("alibi", seed=3, n_layer=1)  # one layer: position i sees tokens i-15..i
        banded = one_layer(ids, window=16)[0]
        for i in (0, 15, 16, 39):
            torch.testing.assert_close(banded[0, i], one_layer(ids[:, max(0, i - 15):i + 1])[0][0, -1])
        model = sharp_model("alibi", seed=3)
        torch.testing.assert_close(model(ids[:, :16], window=16)[0], model(ids[:, :16])[0])
        # two layers: position 16 reaches token 0 through position 1's first layer, so a rolling
        # window is not the reference's truncated window
        assert not torch.allclose(model(ids[:, :17], window=16)[0][0, -1], model(ids[:, 1:17])[0][0, -1])


@pytest.mark.parametrize("window", ["reference", "step-anchored"])
@pytest.mark.parametrize("pos", ["alibi", "rope", "t5"])
def test_a_context_longer_than_block_size_equals_full_recomputation_over_it(pos, window):
    """Length extrapolation: a window of twice the trained context, positions and distances past
    anything training saw, computed through the cache exactly as a full forward over the window."""
    model = sharp_model(pos)
    ps = prompts([3, 20, 40])
    budgets = [45, 30, 12]
    want = [naive(model, p, n, anchored=window == "step-anchored", W=32) for p, n in zip(ps, budgets)]
    for speculate in (0, 4):
        cfg = GenerateConfig(window=window, context=32, speculate=speculate)
        assert generate(model, ps, cfg, max_new_tokens=budgets, step_id=STEP).ids == want
    assert want != [naive(model, p, n, anchored=window == "step-anchored") for p, n in zip(ps, budgets)]


def test_a_context_past_block_size_is_refused_for_absolute_positions():
    for pos in ("learned", "sinusoidal"):
        with pytest.raises(ConfigError, match="past this model's block_size"):
            generate(sharp_model(pos), prompts([3]), GenerateConfig(context=32), max_new_tokens=4)


def test_rolling_window_refuses_absolute_positions():
    for pos in ("learned", "sinusoidal"):
        with pytest.raises(ConfigError, match="rolling.*relative"):
            Decoder(sharp_model(pos), window="rolling")


def test_rows_stop_at_the_terminator_and_their_budget():
    model = sharp_model(seed=2)
    ps = prompts([4, 7, 2], seed=5)
    free = [naive(model, p, 20) for p in ps]
    eos = free[0][5]  # a token the first row emits: it must stop there
    got = generate(model, ps, max_new_tokens=[20, 3, 20], eos_id=eos).ids
    assert got[0] == free[0][:free[0].index(eos) + 1]
    assert got[1] == naive(model, ps[1], 3, eos=eos)
    assert got[2] == naive(model, ps[2], 20, eos=eos)


def test_batched_result_does_not_depend_on_the_batch():
    model = sharp_model("rope", seed=4)
    ps = prompts([2, 6, 11, 3, 8], seed=6)
    together = generate(model, ps, max_new_tokens=24).ids
    alone = [generate(model, [p], max_new_tokens=24).ids[0] for p in ps]
    assert together == alone


def test_decoder_rejects_unknown_window_and_missing_step_token():
    model = sharp_model()
    with pytest.raises(ConfigError, match="window"):
        Decoder(model, window="sliding")
    with pytest.raises(ConfigError, match="STEP"):
        Decoder(model, window="step-anchored")


# -----------------------------------------------------------------------------
# The reference model's greedy generations


@pytest.mark.parametrize("speculate,threads", [(0, 1), (4, 1), (0, 2)])
def test_golden_greedy_generations_are_reproduced(speculate, threads):
    from tinylm.interop.reference import import_reference_checkpoint

    folder = golden_dir("reference_checkpoint")
    model, _ = import_reference_checkpoint(folder / "best-model.pth")
    golden = json.loads((folder / "greedy_generations.json").read_text())
    n = 160  # 21-token prompts: the last 53 tokens are decoded past the 128-token window
    with torch_threads(threads):  # 2: the recomputed windows split between two threads
        got = generate(model, [g["prompt_ids"] for g in golden], GenerateConfig(speculate=speculate),
                       max_new_tokens=n, eos_id=EOS)
    assert got.ids == [g["generated_ids"][:n] for g in golden]
    if speculate:  # inside the window, drafts copied from the prompt and earlier steps were accepted
        assert got.accepted > 0


# -----------------------------------------------------------------------------
# Samplers and beam search


def test_top_k_1_and_beam_1_are_greedy():
    model = sharp_model("alibi", seed=7)
    ps = prompts([3, 10], seed=8)
    greedy = generate(model, ps, max_new_tokens=25).ids
    top1 = generate(model, ps, GenerateConfig(max_new_tokens=25, temperature=1.0, top_k=1, seed=3)).ids
    beam1 = beam_search(model, ps, [25, 25], width=1).ids
    assert top1 == greedy
    assert beam1 == greedy


def test_sampling_is_reproducible_with_a_seed():
    model = sharp_model(seed=9)
    ps = prompts([4, 6], seed=1)
    cfg = GenerateConfig(max_new_tokens=30, temperature=1.5, top_p=0.95, seed=11)
    a, b = generate(model, ps, cfg).ids, generate(model, ps, cfg).ids
    c = generate(model, ps, GenerateConfig(max_new_tokens=30, temperature=1.5, top_p=0.95, seed=12)).ids
    assert a == b
    assert a != c


def test_filters_keep_the_top_k_and_the_nucleus():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True]]
    probs = torch.softmax(logits, -1)[0]  # 0.03, 0.64, 0.09, 0.24
    assert probs[1] < 0.7
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[False, True, False, True]]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, False, False]]


@pytest.mark.parametrize("kw", [dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=0),
                                dict(top_p=0.0), dict(top_p=1.5)])
def test_invalid_sampling_values_are_config_errors(kw):
    with pytest.raises(ConfigError):
        Sampler(**kw)
    with pytest.raises(ConfigError):
        GenerateConfig(**kw).validate()


def test_invalid_beam_and_window_are_config_errors():
    with pytest.raises(ConfigError, match="beam"):
        GenerateConfig(beam=0).validate()
    with pytest.raises(ConfigError, match="window"):
        GenerateConfig(window="fast").validate()


@torch.no_grad()
def logprob(model, prompt, seq) -> float:
    """Sum of the log-probabilities the model gives `seq` after `prompt`, from one full forward."""
    logp = torch.log_softmax(model(torch.tensor([list(prompt) + list(seq)]))[0][0], -1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))


def test_wide_beam_finds_the_most_likely_sequence():
    model = sharp_model("rope", seed=5, vocab=4)
    prompt, n = [1, 3, 0], 3
    best = max(itertools.product(range(4), repeat=n), key=lambda seq: logprob(model, prompt, seq))
    # width V^(n-1) keeps every prefix, so the search is exhaustive
    got = beam_search(model, [prompt], [n], width=16, length_penalty=0.0).ids[0]
    assert tuple(got) == best


def test_beam_of_two_finds_what_greedy_misses():
    model = sharp_model("rope", seed=0, vocab=4)
    prompt, n = [1, 3, 0, 2], 3
    greedy = generate(model, [prompt], max_new_tokens=n).ids[0]
    beam = beam_search(model, [prompt], [n], width=2, length_penalty=0.0).ids[0]
    best = max(itertools.product(range(4), repeat=n), key=lambda seq: logprob(model, prompt, seq))
    assert beam != greedy and tuple(beam) == best  # greedy's first choice leads to a less likely sequence
    assert logprob(model, prompt, beam) > logprob(model, prompt, greedy)


def test_length_penalty_changes_the_choice():
    model = sharp_model("rope", seed=0, vocab=4)
    prompt, n, eos = [1, 3, 0, 2], 3, 3
    # every hypothesis: stopped at the terminator, or at the budget
    hypotheses = [seq for length in range(1, n + 1) for seq in itertools.product(range(4), repeat=length)
                  if eos not in seq[:-1] and (seq[-1] == eos or length == n)]
    chosen = {}
    for penalty in (0.0, 2.0):
        best = max(hypotheses, key=lambda seq: logprob(model, prompt, seq) / len(seq) ** penalty)
        # width 32 keeps all 27 prefixes: the search ranks every hypothesis
        chosen[penalty] = tuple(beam_search(model, [prompt], [n], width=32, length_penalty=penalty,
                                            eos_id=eos).ids[0])
        assert chosen[penalty] == best
    assert len(chosen[0.0]) < len(chosen[2.0])  # without a penalty the shortest hypothesis wins


@torch.no_grad()
def raw_logit_sum(model, prompt, seq) -> float:
    """What a beam scored on raw logits would rank by: the sum of the chosen tokens' logits."""
    logits = model(torch.tensor([list(prompt) + list(seq)]))[0][0]
    return sum(float(logits[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))


def test_beam_ranks_by_log_probabilities_not_raw_logits():
    model = sharp_model("rope", seed=8, vocab=4)
    prompt, n = [2, 2], 3
    seqs = list(itertools.product(range(4), repeat=n))
    best = max(seqs, key=lambda seq: logprob(model, prompt, seq))
    raw_best = max(seqs, key=lambda seq: raw_logit_sum(model, prompt, seq))
    assert raw_best != best  # this model tells the two scores apart
    got = beam_search(model, [prompt], [n], width=16, length_penalty=0.0).ids[0]  # exhaustive width
    assert tuple(got) == best


def test_temperature_zero_is_greedy_whatever_top_k_and_top_p():
    model = sharp_model("alibi", seed=4)
    ps = prompts([3, 8], seed=5)
    greedy = generate(model, ps, GenerateConfig(max_new_tokens=20, speculate=0)).ids
    for kw in (dict(), dict(top_k=3), dict(top_p=0.5), dict(top_k=2, top_p=0.9, seed=7)):
        cfg = GenerateConfig(max_new_tokens=20, temperature=0.0, speculate=0, **kw)
        assert generate(model, ps, cfg).ids == greedy
    sampler = Sampler(temperature=0.0, top_k=2)
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.9]])
    assert sampler(logits).tolist() == [1]  # no division by the temperature: no nan, no inf
    assert Sampler(temperature=1e-6)(logits).tolist() == [1]  # a tiny temperature tends to greedy


@pytest.mark.parametrize("kw", [dict(), dict(temperature=1.0, seed=1), dict(beam=3), dict(speculate=4)])
def test_suppressed_tokens_are_never_generated(kw):
    model = sharp_model(seed=6)
    ps = prompts([4, 12], seed=3)
    cfg = GenerateConfig(max_new_tokens=30, **kw)
    free = {t for ids in generate(model, ps, cfg).ids for t in ids}
    banned = sorted(free)[:2]  # tokens this model does generate
    out = generate(model, ps, cfg, suppress=banned).ids
    assert all(len(ids) == 30 for ids in out)
    assert not {t for ids in out for t in ids} & set(banned)


def test_beam_search_stops_at_the_terminator_in_the_cache():
    model = sharp_model(seed=3)
    ps = prompts([5, 17], seed=2)
    res = beam_search(model, ps, [20, 20], width=3, eos_id=EOS)
    for ids in res.ids:
        assert 1 <= len(ids) <= 20
        assert EOS not in ids[:-1]


# -----------------------------------------------------------------------------
# Command line


def test_generate_cli(tmp_path, capsys):
    from tinylm.cli import main
    from tinylm.tokens.tokenizer import keyword_tokenizer

    tok = keyword_tokenizer("demo")
    model = sharp_model(vocab=tok.vocab_size)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=tok.to_dict())
    prompt = "# code\na = 1\n#STEP\n"
    assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.startswith("# code\na = 1\n#STEP\n")
    ids = tok.encode(prompt).tolist()
    step = tok.token_id("\n#STEP\n")
    by_width = {}
    for width in ("1", "2"):
        assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--window", "step-anchored",
                     "--beam", width, "--max-new-tokens", "4"]) == 0
        by_width[width] = capsys.readouterr().out
    expected = beam_search(model, [ids], [4], width=2, eos_id=tok.eos_id, window="step-anchored", step_id=step)
    assert by_width["2"] == tok.decode(ids + expected.ids[0]) + "\n"
    assert by_width["2"] != by_width["1"]  # for this model, the beam's choice is not greedy's
    outs = []
    for k in ("0", "3"):
        assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--max-new-tokens", "12",
                     "--speculate", k]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--speculate", "-1"]) == 2
    assert "speculate" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--temperature", "-2"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(path), "--prompt", "a = é"]) == 2
    assert "é" in capsys.readouterr().err
    # escapes are decoded without mangling the other characters; --device auto picks a device
    assert main(["generate", "--checkpoint", str(path), "--prompt", "# code\\na = é", "--device", "auto"]) == 2
    assert "'é'" in capsys.readouterr().err   # the prompt reached the tokenizer as 'a = é', not 'a = Ã©'
    assert main(["generate", "--checkpoint", str(path), "--prompt", "# code\\na = 1\\n#STEP\\n", "--device", "auto",
                 "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.startswith(prompt)


def test_escapes_decode_and_keep_every_other_character():
    from tinylm.decode.strategies import decode_escapes

    assert decode_escapes("naïve café\\n日本\\t\\\\x") == "naïve café\n日本\t\\x"
    assert decode_escapes("no escapes: é") == "no escapes: é"
