"""`tinylm explain`: the replay reproduces the decoder exactly under every window and positional
encoding, key roles are read right off an m2 trace, the command fails cleanly, and the page works
in a real headless browser (Chromium driven by Playwright; skipped where either is absent)."""

from __future__ import annotations

import shutil
from dataclasses import asdict

import pytest
import torch
from conftest import TINY_TRACE

from tinylm.cli import main
from tinylm.evaluate.explain import ROLES, explain_example, role_of, token_roles
from tinylm.evaluate.scoring import read_suite
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.tokens.tokenizer import keyword_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOK = keyword_tokenizer("m2")
TRACE = TINY_TRACE


def never_stopping_model(pos_encoding: str = "alibi", block_size: int = 40) -> GPT:
    """A random model that never writes the terminator, so its trace runs past several windows."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32,
                    pos_encoding=pos_encoding, lm_head_bias=True)
    model = GPT(cfg).eval()
    with torch.no_grad():
        model.lm_head.bias[TOK.eos_id] = -100.0
    return model


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.txt"
    path.write_text("\n\n".join([TRACE, TRACE.replace("a = 1", "a = 2").replace("a?1", "a?2")]) + "\n\n")
    return path


@pytest.mark.parametrize("window", ["step-anchored", "reference"])
@pytest.mark.parametrize("pos_encoding", ["alibi", "learned", "rope"])
def test_replay_reproduces_the_decoder(suite, window, pos_encoding):
    model = never_stopping_model(pos_encoding)
    example = read_suite(suite, TOK)[1]
    data = explain_example(model, TOK, example, window=window)   # raises if a replayed arg-max differs
    P, n = data["prompt_len"], len(data["probs"])
    assert n == len(data["pieces"]) - P > 2 * model.config.block_size   # past several windows
    assert len(set(data["starts"])) > 3
    for t, (start, per_layer) in enumerate(zip(data["starts"], data["attention"])):
        q = P + t - 1
        assert q - start + 1 <= model.config.block_size and 0 < data["probs"][t] <= 1
        assert len(per_layer) == 2 and len(data["lens"][t]) == 2
        for heads in per_layer:
            for keys in heads:
                assert all(start <= k <= q for k, _ in keys) and sum(w for _, w in keys) <= 1 + 1e-3
    for layer in data["heads"]:
        for mass in layer:
            assert set(mass) == set(ROLES) and sum(mass.values()) <= 1 + 1e-3


def test_key_roles_of_an_m2_trace():
    ids = TOK.encode(TRACE).tolist()
    pieces = TOK.token_strings(ids)
    P = pieces.index("\n#STEP\n") + 1
    roles = token_roles(pieces, P)
    second = [i for i, p in enumerate(pieces) if p == "\n#STEP\n"][2] + 1   # the third step's first token
    at = [i for i in range(second, len(pieces)) if pieces[i] == "@"][0]
    q = len(pieces) - 1                                   # the last token: inside the third step's state
    assert role_of(at, q, roles) == "marker"
    state = [i for i in range(second, len(pieces)) if roles[i]["state"]]
    assert "".join(pieces[i] for i in state) == "a?1;b?1"  # of "@^$a?1;b?1": after '$', to the end
    assert role_of(state[0], q, roles) == "state"
    assert pieces[1] == pieces[P + 2] == "a" and pieces[P + 1] == "@"
    assert role_of(1, P + 2, roles) == "same line, previous step"   # the prompt's "a = 1", for step 0's "@a = 1"
    assert role_of(2, q, roles) == "program"
    assert role_of(second, q, roles) == "current step"


def test_explain_writes_one_page_and_refuses_bad_input(tmp_path, suite, capsys):
    ckpt = tmp_path / "m.pt"
    model = never_stopping_model()
    save_checkpoint(ckpt, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=TOK.to_dict())
    page = tmp_path / "page.html"
    assert main(["explain", "--checkpoint", str(ckpt), "--suite", str(suite), "--index", "1", "--out", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "http://" not in text and "https://" not in text
    assert "__DATA__" not in text and '"prompt_len"' in text
    capsys.readouterr()
    for args, named in [(["--index", "7"], "no example 7"), (["--out", str(tmp_path / "p.txt")], "HTML")]:
        argv = ["explain", "--checkpoint", str(ckpt), "--suite", str(suite), "--out", str(tmp_path / "x.html"), *args]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and named in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "page.html", "suite.txt"]


def test_the_page_works_in_a_headless_browser(tmp_path, suite):
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    ckpt, page_path = tmp_path / "m.pt", tmp_path / "page.html"
    model = never_stopping_model()
    save_checkpoint(ckpt, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=TOK.to_dict())
    assert main(["explain", "--checkpoint", str(ckpt), "--suite", str(suite), "--out", str(page_path)]) == 0
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        assert page.locator("#generated .tok").count() == len(read_suite(suite, TOK)[0].target_ids) * 2 + 8
        assert page.locator("#target .tok").count() == len(read_suite(suite, TOK)[0].target_ids)
        assert page.locator("#heads tr").count() == 1 + 2 * 2 and page.locator("#lens tr").count() == 1 + 2

        def canvas():
            return page.evaluate("""() => { const c = document.getElementById('heatmap');
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let ink = 0; for (let i = 0; i < px.length; i += 4) if (px[i] < 200) ink++;
                return [c.toDataURL(), ink, c.width]; }""")

        before_url, ink, _ = canvas()
        before_text = page.locator("#selected").inner_text()
        assert ink > 0 and "generated token 0" in before_text
        page.locator("#generated .tok").nth(60).click()
        after_url, ink, _ = canvas()
        assert "generated token 60" in page.locator("#selected").inner_text() and ink > 0
        assert after_url != before_url and page.locator("#generated .tok.sel").count() == 1
        shot = page.screenshot(full_page=True)
        browser.close()
    assert not errors
    assert len(shot) > 20_000   # a rendered page, not a blank one


def test_eval_writes_the_pages_of_its_first_failures(tmp_path, suite, capsys):
    ckpt = tmp_path / "m.pt"
    model = never_stopping_model(block_size=200)   # a random model: no example is matched
    save_checkpoint(ckpt, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=TOK.to_dict())
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(ckpt), "--suite", f"id={suite}", "--out", str(out),
                 "--window", "step-anchored", "--explain-failures", "1", "--device", "cpu"]) == 0
    assert [p.name for p in (out / "id" / "explain").iterdir()] == ["0.html"]
    assert '"class":"failure"' in (out / "id" / "explain" / "0.html").read_text()
    assert main(["eval", "--sweep", str(tmp_path), "--suite", str(suite), "--out", str(tmp_path / "e2"),
                 "--explain-failures", "1"]) == 2
    assert "--explain-failures" in capsys.readouterr().err and not (tmp_path / "e2").exists()
