"""The architecture playground: `tinylm inspect` (shapes by forward hooks, parameters, memory),
`tinylm compare` (curves of run folders), `tinylm sweep` (a grid of tiny runs within a memory budget),
and the flaws such tools exist to catch, pinned: dropout active in training steps only, the learning
rate the optimizer really uses, top-k/top-p masks that change what is sampled, a KV cache that feeds
one token per step and decodes what full recomputation decodes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch
import torch.nn as nn
from test_data_batching import write_dataset
from test_decode import naive, prompts, sharp_model
from test_train import TINY, tiny_config

from tinylm.base import runtime
from tinylm.base.config import load_config, write_yaml
from tinylm.cli import main
from tinylm.decode.sampling import Sampler
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.report.compare import plot_curves, summarize
from tinylm.studies.inspect_model import meta_model, module_shapes, training_memory
from tinylm.studies.sweep import sweep
from tinylm.train.config import TrainConfig
from tinylm.train.loop import build, fit, write_run_info
from tinylm.train.sinks import Metrics

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tinypy_code_tracing_demo" / "2_model_training" / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


# -----------------------------------------------------------------------------
# inspect


def test_shapes_and_parameters_of_every_module():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_heads=2, n_embd=32, dropout=0.1)
    model = GPT(cfg).train()
    rows = {r.name: r for r in module_shapes(model, torch.zeros(3, 16, dtype=torch.long))}
    assert list(rows) == [name for name, _ in model.named_modules()]
    qkv = rows["blocks.1.attn.qkv"]
    assert (qkv.inputs, qkv.outputs) == ("(3, 16, 32)", "(3, 16, 64)")  # (4 + 2 * 2) heads of 8
    assert qkv.params == 32 * 64 and qkv.calls == 1
    assert rows["wte"].inputs == "(3, 16) int64" and rows["lm_head"].outputs == "(3, 16, 50)"
    assert rows["blocks.0.attn"].inputs == "(3, 16, 32), AttnInputs"
    assert rows[""].params == model.num_params() == sum(rows[n].params for n in ("wte", "wpe", "blocks", "ln_f",
                                                                               "lm_head"))
    assert all(r.calls == 1 for r in rows.values() if r.kind == "Dropout")  # every dropout is applied
    assert rows["blocks"].calls == 0  # a ModuleList is iterated, never called


def test_any_module_can_be_inspected_on_the_meta_device():
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2)).to("meta")
    rows = module_shapes(net, torch.zeros(4, 5, device="meta"))
    assert [(r.name, r.outputs, r.params) for r in rows] == [
        ("", "(4, 2)", 58), ("0", "(4, 7)", 42), ("1", "(4, 7)", 0), ("2", "(4, 2)", 16)]


def test_training_memory_grows_with_the_model_and_the_batch():
    cfg = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32)
    small = training_memory(cfg, rows=4)
    assert small["parameters"] == GPT(cfg).num_params()
    assert small["state_bytes"] == 16 * small["parameters"]
    assert 1.9 < training_memory(cfg, rows=8)["activation_bytes"] / small["activation_bytes"] <= 2
    assert training_memory(cfg, rows=4, activation_bytes=2)["activation_bytes"] < small["activation_bytes"]
    wide = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=2048)
    assert training_memory(wide, rows=4)["total_bytes"] > 2**30
    assert meta_model(wide).wte.weight.is_meta


def test_inspect_cli_prints_the_module_table(capsys):
    assert main(["inspect", str(SMOKE), "model.n_layer=3", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "blocks.2" not in out and "    qkv" in out  # indented names
    assert out.count("Block ") == 3
    assert "(2, 128, 96)" in out  # qkv of width 32
    assert "parameters; batch 2 x 128 tokens (train mode); estimated training memory" in out


def test_inspect_errors_are_one_line(tmp_path, capsys):
    assert "no such config file" in cli_error(capsys, ["inspect", str(tmp_path / "none.yaml")])
    assert "model.n_layerz" in cli_error(capsys, ["inspect", str(SMOKE), "model.n_layerz=3"])
    assert "--batch-size" in cli_error(capsys, ["inspect", str(SMOKE), "--batch-size", "0"])


# -----------------------------------------------------------------------------
# Flaws pinned: dropout, the learning rate, top-k/top-p, the KV cache


def test_training_steps_run_dropout_and_the_scheduled_learning_rate(tmp_path):
    """Dropout modules see train mode in every training step and eval mode in validation; the
    optimizer steps with the configured peak and schedule."""
    raw = tiny_config(tmp_path, **{"model.dropout": 0.5, "max_steps": 6, "eval_interval": 3,
                                   "optim.lr": 3e-3, "optim.min_lr": 3e-4, "optim.warmup_steps": 2})
    cfg = load_config(TrainConfig, base=raw)
    rt = runtime.setup("cpu", "float32", cfg.seed)
    r = build(cfg, rt)
    modes, lrs = [], []
    drops = [m for m in r.model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 1 + 2 * 2  # embeddings, and attention and MLP of each block
    for m in drops:
        m.register_forward_hook(lambda m, i, o: modes.append(m.training))
    r.optimizer.register_step_pre_hook(lambda opt, a, k: lrs.append([g["lr"] for g in opt.param_groups]))
    write_run_info(r, None, False)
    fit(r, Metrics(r, None))
    rt.close()
    forwards = [set(modes[i:i + len(drops)]) for i in range(0, len(modes), len(drops))]
    assert forwards.count({True}) == 6  # every dropout of every training step's forward
    assert forwards.count({False}) == len(forwards) - 6 > 0  # the validation forwards
    # warmup 2 steps to the peak 3e-3, then cosine to 3e-4 over the 4 remaining steps
    expected = [1.5e-3, 3e-3, 3e-3, 3e-4 + 1.35e-3 * (1 + math.cos(math.pi / 4)), 1.65e-3,
                3e-4 + 1.35e-3 * (1 + math.cos(3 * math.pi / 4))]
    assert [group[0] for group in lrs] == pytest.approx(expected, rel=1e-12)
    assert all(len(set(groups)) == 1 for groups in lrs)  # every parameter group gets the same rate
    logged = [rec["lr"] for rec in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if "lr" in rec]
    assert logged == pytest.approx(expected, rel=1e-12)
    x = torch.zeros(2, 8, dtype=torch.long)
    r.model.train()
    assert not torch.equal(r.model(x)[0], r.model(x)[0])
    r.model.eval()
    assert torch.equal(r.model(x)[0], r.model(x)[0])


def test_top_k_and_top_p_restrict_what_is_sampled():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]]).repeat(4000, 1)  # probabilities 0.03, 0.64, 0.09, 0.24

    def drawn(**kw):
        return set(Sampler(temperature=1.0, seed=0, **kw)(logits).tolist())

    assert drawn() == {0, 1, 2, 3}
    assert drawn(top_k=2) == {1, 3}
    assert drawn(top_k=3) == {1, 2, 3}
    assert drawn(top_p=0.7) == {1, 3}  # 0.64 < 0.7: the nucleus needs the second token
    assert drawn(top_p=0.5) == {1}


def test_cached_decoding_feeds_one_token_per_step_and_decodes_as_full_recomputation():
    model = sharp_model(seed=3)  # block_size 16
    ps = prompts([4, 4, 4], seed=5)
    fed = []
    model.wte.register_forward_hook(lambda m, i, o: fed.append(tuple(i[0].shape)))
    out = generate(model, ps, GenerateConfig(max_new_tokens=10, speculate=0, stop_at_eos=False)).ids
    # the prompt once (its last token goes with the first step), then only the newest token
    assert fed == [(3, 3)] + [(3, 1)] * 10
    fed.clear()
    assert out == [naive(model, p, 10) for p in ps]


# -----------------------------------------------------------------------------
# compare and sweep


def fake_run(folder: Path, lr: float, losses: list[float], vals: dict[int, float]) -> Path:
    folder.mkdir(parents=True)
    lines = [{"step": s + 1, "loss": loss, "lr": lr, "grad_norm": 1.0, "tokens": 256 * (s + 1),
              "tokens_per_s": 1e4, "elapsed_s": 30.0 * (s + 1)} for s, loss in enumerate(losses)]
    for step, val in vals.items():
        lines.insert(step, {"step": step, "val_loss": val})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "run.json").write_text(json.dumps({"parameters": 1234}))
    write_yaml({"optim": {"lr": lr, "min_lr": 1e-4}, "seed": 1, "out_dir": str(folder)}, folder / "config.yaml")
    return folder


def test_compare_plots_every_run_and_tables_what_differs(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 1e-3, [3.0, 2.5, 2.0, 1.8], {2: 2.6, 4: 1.9})
    b = fake_run(tmp_path / "b", 3e-3, [3.0, 2.0, 1.5], {3: 1.7})
    out = tmp_path / "c.png"
    assert main(["compare", str(a), str(b), "--x", "tokens", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| run | parameters | steps | tokens | minutes | loss | val loss | best val loss "
                        "| optim.lr |")
    assert lines[2] == "| a | 1,234 | 4 | 1,024 | 2.0 | 1.8000 | 1.9000 | 1.9000 (step 4) | 0.001 |"
    assert lines[3] == "| b | 1,234 | 3 | 768 | 1.5 | 1.5000 | 1.7000 | 1.7000 (step 3) | 0.003 |"
    assert matplotlib.image.imread(out).ndim == 3
    fig = plot_curves([summarize(a), summarize(b)], tmp_path / "s.png", x="step")
    loss_ax, lr_ax = fig.axes
    train_a, val_a, train_b, val_b = loss_ax.get_lines()
    assert list(val_a.get_xdata()) == [2, 4] and list(val_a.get_ydata()) == [2.6, 1.9]
    assert list(train_b.get_ydata()) == [3.0, 2.0, 1.5]
    assert [list(line.get_ydata()) for line in lr_ax.get_lines()] == [[1e-3] * 4, [3e-3] * 3]
    lines = (b / "metrics.jsonl").read_text().replace('"val_loss": 1.7', '"val_loss": 1.7, "val_acc": 0.42')
    (b / "metrics.jsonl").write_text(lines)
    acc_ax = plot_curves([summarize(a), summarize(b)], tmp_path / "s.png").axes[2]
    assert [(list(line.get_xdata()), list(line.get_ydata())) for line in acc_ax.get_lines()] == [([3], [0.42])]


def test_compare_resumed_minutes_add_up_and_errors_name_the_folder(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 1e-3, [3.0, 2.5, 2.0, 1.8], {})
    lines = (a / "metrics.jsonl").read_text().splitlines()
    resumed = [json.loads(x) for x in lines]
    resumed[2]["elapsed_s"], resumed[3]["elapsed_s"] = 10.0, 20.0  # a resume restarted the clock after step 2
    (a / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in resumed) + '{"step": 5, "lo')
    assert [r["minutes"] for r in summarize(a)["curve"]] == pytest.approx([0.5, 1.0, 70 / 60, 80 / 60])
    assert f"{tmp_path / 'none'}: no metrics.jsonl" in cli_error(capsys, ["compare", str(a), str(tmp_path / "none")])


def test_sweep_trains_the_grid_within_the_budget(tmp_path, capsys):
    write_dataset(tmp_path / "toy")
    raw = tiny_config(tmp_path, max_steps=4, eval_interval=2)
    del raw["out_dir"]
    config = tmp_path / "tiny.yaml"
    write_yaml(raw, config)
    out = tmp_path / "grid"
    assert main(["sweep", str(config), "seed=7", "--grid", "optim.lr=0.001,0.003",
                 "--grid", f"model.n_embd={TINY['n_embd']},2048", "--budget-gib", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip optim.lr=") == 2 and "> budget 0.5 GiB" in printed
    rows = json.loads((out / "grid.json").read_text())["rows"]
    assert [(r["values"]["optim.lr"], r["values"]["model.n_embd"], r["status"].split(":")[0]) for r in rows] == [
        ("0.001", "32", "trained"), ("0.001", "2048", "skipped"), ("0.003", "32", "trained"), ("0.003", "2048", "skipped")]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["optim.lr=0.001,model.n_embd=32",
                                                                   "optim.lr=0.003,model.n_embd=32"]
    for lr in ("0.001", "0.003"):
        folder = out / f"optim.lr={lr},model.n_embd=32"
        resolved = load_config(TrainConfig, folder / "config.yaml")
        assert (resolved.optim.lr, resolved.seed) == (float(lr), 7)
        assert (folder / "metrics.csv").read_text().startswith("step,loss,lr,")  # CSV without asking
    assert all(r["steps"] == 4 and r["best_val_loss"] is not None for r in rows if r["status"] == "trained")
    table = (out / "grid.md").read_text()
    assert table.startswith("| optim.lr | model.n_embd | parameters | est. memory | status |")
    assert matplotlib.image.imread(out / "grid.png").ndim == 3
    # run again: every run is resumed at its end, nothing is trained twice
    mtime = (out / "optim.lr=0.001,model.n_embd=32" / "ckpt_00000004.pt").stat().st_mtime_ns
    assert main(["sweep", str(config), "seed=7", "--grid", "optim.lr=0.001,0.003",
                 "--grid", "model.n_embd=32,2048", "--budget-gib", "0.5", "--out", str(out)]) == 0
    assert (out / "optim.lr=0.001,model.n_embd=32" / "ckpt_00000004.pt").stat().st_mtime_ns == mtime


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    write_dataset(tmp_path / "toy")
    raw = tiny_config(tmp_path, max_steps=2, eval_interval=2)
    del raw["out_dir"]
    write_yaml(raw, tmp_path / "tiny.yaml")
    missing = tmp_path / "missing"
    rows = sweep(tmp_path / "tiny.yaml", {"data.dataset": [str(missing), str(tmp_path / "toy")]}, tmp_path / "grid",
                 log=lambda line: None)
    assert rows[0]["status"].startswith(f"failed: {missing}") and rows[0]["steps"] is None
    assert (rows[1]["status"], rows[1]["steps"]) == ("trained", 2)
    assert "| failed: " in (tmp_path / "grid" / "grid.md").read_text()


def test_sweep_checks_every_combination_before_training(tmp_path, capsys):
    out = tmp_path / "grid"
    assert "optim.lrr" in cli_error(capsys, ["sweep", str(SMOKE), "--grid", "optim.lrr=1,2", "--out", str(out)])
    assert "n_head (3) must divide" in cli_error(capsys, ["sweep", str(SMOKE), "--grid", "model.n_head=2,3",
                                                "--out", str(out)])  # 3 does not divide 32
    assert "KEY=V1,V2" in cli_error(capsys, ["sweep", str(SMOKE), "--grid", "optim.lr", "--out", str(out)])
    assert "no --grid" in cli_error(capsys, ["sweep", str(SMOKE), "--out", str(out)])
    assert not out.exists()


@pytest.mark.parametrize("command", ["inspect", "compare", "sweep"])
def test_new_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"tinylm {command}" in capsys.readouterr().out
