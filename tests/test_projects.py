"""The research projects: every committed config loads, and every project runs end to end under `smoke`.

The end-to-end runs work in a copy of the project and of the dataset specs, so the checkout stays
clean; they check what the stages produced, not only that they finished.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, built_programs

from tinylm.base.errors import ConfigError

PROJECTS = sorted(p.name for p in REPO.glob("research_project_*") if p.is_dir())
CONFIGS = [(p, c.stem) for p in PROJECTS for c in sorted((REPO / p / "configs").glob("*.yaml"))]


def test_there_are_six_projects_with_three_sizes_each():
    assert PROJECTS == [f"research_project_{i}" for i in range(1, 7)]
    for project in PROJECTS:
        assert {c for p, c in CONFIGS if p == project} >= {"smoke", "cpu", "paper"}
        for script in ("1_data.py", "2_train.py", "3_eval.py", "4_report.py", "run_all.py", "README.md"):
            assert (REPO / project / script).is_file(), f"{project}/{script}"


@pytest.mark.parametrize("project,config", CONFIGS, ids=[f"{p[-1]}-{c}" for p, c in CONFIGS])
def test_every_committed_config_resolves_its_datasets_runs_and_models(project, config):
    import torch

    from tinylm.data.spec import load_spec
    from tinylm.model.gpt import GPT
    from tinylm.studies.experiment import Project
    from tinylm.train.config import resolve_model_config

    p = Project(REPO / project, config)
    for entry in p.cfg.datasets.values():
        load_spec(REPO / entry.spec, entry.overrides)
    for name, run in p.cfg.runs.items():
        if run.checkpoint is not None:
            continue
        cfg = p.train_config(name)
        if cfg.init_from is None:
            with torch.device("meta"):  # the paper models are large: shapes only
                GPT(resolve_model_config(cfg, vocab_size=77, where=name))
    for suite in p.cfg.eval.suites.values():
        head = suite.split("/")[0]
        assert head in p.cfg.datasets, f"suite {suite} names no dataset of the config"


@pytest.mark.parametrize("project,config", CONFIGS, ids=[f"{p[-1]}-{c}" for p, c in CONFIGS])
def test_every_run_of_a_study_is_fixed_in_steps_not_minutes(project, config):
    """A compared run's length is a number of steps: the same config is the same experiment on a slow
    or a fast machine (wall-clock sizing, `schedule_minutes`, is for the demo only)."""
    from tinylm.studies.experiment import Project

    p = Project(REPO / project, config)
    for name, run in p.cfg.runs.items():
        if run.checkpoint is None:
            assert p.train_config(name).schedule_minutes is None, f"{project}/{config}: run {name}"


def test_a_stage_rejects_an_unknown_config_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "research_project_1" / "1_data.py"), "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "smoke" in proc.stderr  # names the configs that exist


@pytest.mark.parametrize("runs,message", [
    ({"a": {}, "b": {"steps_of": "c"}}, "runs.b.steps_of: 'c' is not a run listed before 'b'"),
    ({"a": {"steps_of": "b"}, "b": {}}, "runs.a.steps_of: 'b' is not a run listed before 'a'"),
    ({"a": {"checkpoint": "x.pt"}, "b": {"steps_of": "a"}}, "runs.b.steps_of: run 'a' is not trained here"),
    ({"a": {}, "b": {"steps_factor": 2}}, "runs.b.steps_factor: a positive multiple of a steps_of run's steps"),
    ({"a": {}, "b": {"steps_of": "a", "steps_factor": 0}}, "runs.b.steps_factor: a positive multiple"),
    ({"a": {"suites": ["id", "nope"]}}, "runs.a.suites: unknown suite 'nope'"),
    ({"a": {"checkpoint": "x.pt", "seeds": [1, 2]}}, "runs.a.checkpoint: a checkpoint run with seeds"),
    ({"a": {"checkpoint": "x-s{seed}.pt"}}, "runs.a.checkpoint: a checkpoint run with seeds"),
])
def test_a_run_entry_naming_what_does_not_exist_is_refused(tmp_path, runs, message):
    from tinylm.base.errors import ConfigError
    from tinylm.studies.experiment import Project
    from tinylm.studies.experiment_config import read_with_base

    folder = _copy_repo(tmp_path, "research_project_1")
    smoke = read_with_base(folder / "configs" / "smoke.yaml")   # resolved: the delta merged into cpu.yaml
    (folder / "configs" / "bad.yaml").write_text(yaml.safe_dump({**smoke, "runs": runs, "report": []}))
    with pytest.raises(ConfigError, match=message):
        Project(folder, "bad")


def test_a_run_with_steps_of_waits_for_that_run_to_finish(tmp_path):
    from tinylm.base.errors import DataError
    from tinylm.studies.experiment import Project, train_runs
    from tinylm.studies.experiment_config import read_with_base

    folder = _copy_repo(tmp_path, "research_project_1")
    smoke = read_with_base(folder / "configs" / "smoke.yaml")   # resolved: the delta merged into cpu.yaml
    smoke["train"].update(max_epochs=None, max_steps=12)
    runs = {"base": {"overrides": {"max_steps": 10}}, "width-64": {"steps_of": "base"}}
    (folder / "configs" / "steps.yaml").write_text(yaml.safe_dump({**smoke, "runs": runs, "report": [],
                                                                    "eval": {**smoke["eval"], "derived": []}}))
    p = Project(folder, "steps")
    assert p.trained_steps("base") is None
    assert p.train_config("width-64").max_steps == 12  # not known yet: the shared section's length
    with pytest.raises(DataError, match="run 'width-64' trains as many steps as run 'base', which has not finished"):
        train_runs(p, ["width-64"], log=lambda *_: None)
    base = p.run_dir("base")
    base.mkdir(parents=True)
    (base / "run.json").write_text(json.dumps({"max_steps": 7}))
    assert p.trained_steps("base") is None  # sized, but its last checkpoint is not written yet
    (base / "ckpt_00000007.pt").write_bytes(b"")
    cfg = p.train_config("width-64")
    assert (p.trained_steps("base"), cfg.max_steps, cfg.schedule_minutes) == (7, 7, None)


def test_a_run_with_seeds_is_one_run_per_seed_and_runs_that_name_it_take_the_same_seed(tmp_path):
    from tinylm.studies.experiment import Project
    from tinylm.studies.experiment_config import read_with_base

    folder = _copy_repo(tmp_path, "research_project_1")
    smoke = read_with_base(folder / "configs" / "smoke.yaml")   # resolved: the delta merged into cpu.yaml
    runs = {"main": {"seeds": [7, 3]}, "tune": {"seeds": [3, 9], "init_run": "main"}, "one": {"steps_of": "main"},
            "other": {"checkpoint": "elsewhere/main-s{seed}/best.pt", "seeds": [3, 7]},
            "fine": {"seeds": [7, 3], "init_run": "other"}}
    derived = [{**smoke["eval"]["derived"][0], "run": "main"}]
    (folder / "configs" / "seeds.yaml").write_text(yaml.safe_dump(
        {**smoke, "runs": runs, "eval": {**smoke["eval"], "derived": derived},
         "report": [{"kind": "table", "file": "t.md", "runs": ["main", "tune-s9"]}]}, sort_keys=False))
    p = Project(folder, "seeds")
    assert list(p.cfg.runs) == ["main-s7", "main-s3", "tune-s3", "tune-s9", "one", "other-s3", "other-s7",
                                "fine-s7", "fine-s3"]
    assert p.groups == {"main": ["main-s7", "main-s3"], "tune": ["tune-s3", "tune-s9"],
                        "other": ["other-s3", "other-s7"], "fine": ["fine-s7", "fine-s3"]}
    trained = [r for r in p.cfg.runs if not r.startswith("other")]
    assert [p.train_config(r).seed for r in trained] == [7, 3, 3, 9, smoke["train"].get("seed", 1337), 7, 3]
    # a checkpoint per seed, and the fine-tunes start from the one of their own seed
    assert p.cfg.runs["other-s3"].checkpoint == "elsewhere/main-s3/best.pt"
    assert (p.cfg.runs["fine-s7"].init_run, p.cfg.runs["fine-s3"].init_run) == ("other-s7", "other-s3")
    assert p.cfg.runs["tune-s3"].init_run == "main-s3"   # the same seed where the group has it
    assert p.cfg.runs["tune-s9"].init_run == "main-s7"   # else the first
    assert p.cfg.runs["one"].steps_of == "main-s7" and p.cfg.eval.derived[0].run == "main-s7"
    assert p.members(["main", "one"]) == ["main-s7", "main-s3", "one"]
    assert p.train_config("main-s3").out_dir.endswith("train/main-s3")


def test_the_report_splits_a_suite_by_statement_kind(tmp_path):
    from tinylm.base.stats import wilson
    from tinylm.evaluate.scoring import by_statement, scores
    from tinylm.studies.experiment import Project, write_report
    from tinylm.studies.experiment_config import read_with_base

    folder = _copy_repo(tmp_path, "research_project_1")
    smoke = read_with_base(folder / "configs" / "smoke.yaml")
    table = {"kind": "table", "file": "t.md", "runs": ["main"], "suites": ["id", "id: while", "id: no while"],
             "layout": "suites"}
    config = {**smoke, "runs": {"main": {}}, "eval": {**smoke["eval"], "derived": [], "statements": ["while"]},
              "report": [table]}
    (folder / "configs" / "split.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    p = Project(folder, "split")
    loop, flat = "# code\nwhile a < 2:\n\ta = a + 1\n#STEP\n", "# code\na = 1\n#STEP\n"
    records = [{"prompt": prompt, "class": c, "steps_correct_frac": f, "stopped": True, "output_correct": None}
               for prompt, c, f in [(loop, "hard", 1.0), (loop, "failure", 0.5), (loop, "failure", 0.0),
                                    (flat, "hard", 1.0), (flat, "hard", 1.0)]]
    folder_of_main = p.eval_dir("main", p.cfg.eval.window)
    folder_of_main.mkdir(parents=True)
    (folder_of_main / "summary.json").write_text(json.dumps(
        {"suites": [{"suite": "id", **scores(records), "by_statement": by_statement(records)}]}))
    write_report(p, log=lambda *_: None)
    cells = _table_hard(p.results / "t.md")
    for suite, (hard, n) in {"id": (3, 5), "id: while": (1, 3), "id: no while": (2, 2)}.items():
        low, high = wilson(hard, n)
        assert cells[("main", suite)] == pytest.approx((100 * hard / n, 100 * low, 100 * high), abs=0.05)
    written = json.loads((p.results / "summary.json").read_text())["cells"]
    assert {(c["suite"], c["n"]) for c in written if c["metric"] == "hard_pct"} == \
        {("id", 5), ("id: while", 3), ("id: no while", 2)}
    for bad, message in [({"eval": {**config["eval"], "statements": ["loop"]}}, "eval.statements: unknown statement kind 'loop'"),
                         ({"eval": {**config["eval"], "statements": []}}, "report\\[0\\].suites: unknown suite 'id: while'")]:
        (folder / "configs" / "bad.yaml").write_text(yaml.safe_dump({**config, **bad}, sort_keys=False))
        with pytest.raises(ConfigError, match=message):
            Project(folder, "bad")


@pytest.mark.parametrize("runs,message", [
    ({"main": {"seeds": [1, 1]}}, "runs.main.seeds: distinct seeds"),
    ({"main": {"seeds": [1], "overrides": {"seed": 4}}}, "runs.main.seeds: distinct seeds"),
])
def test_bad_seeds_are_refused(tmp_path, runs, message):
    from tinylm.base.errors import ConfigError
    from tinylm.studies.experiment import Project
    from tinylm.studies.experiment_config import read_with_base

    folder = _copy_repo(tmp_path, "research_project_1")
    smoke = read_with_base(folder / "configs" / "smoke.yaml")   # resolved: the delta merged into cpu.yaml
    (folder / "configs" / "bad.yaml").write_text(yaml.safe_dump({**smoke, "runs": runs, "report": [],
                                                                  "eval": {**smoke["eval"], "derived": []}}))
    with pytest.raises(ConfigError, match=message):
        Project(folder, "bad")


def _copy_repo(tmp_path: Path, project: str) -> Path:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for spec in REPO.glob("datasets/*/dataset.yaml"):
        (tmp_path / spec.parent.relative_to(REPO)).mkdir(parents=True, exist_ok=True)
        shutil.copy(spec, tmp_path / spec.relative_to(REPO))
    shutil.copytree(REPO / project, tmp_path / project, ignore=shutil.ignore_patterns("runs", "results", "__pycache__"))
    return tmp_path / project


def _table_hard(path: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(run, column) -> (hard %, interval low, high), from a markdown table written by the report stage."""
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = {}
    for line in lines[2:]:
        row = [c.strip() for c in line.strip("|").split("|")]
        for col, value in zip(header[1:], row[1:]):
            if col.endswith("hard %") and value != "-":
                number, low, high = re.fullmatch(r"([\d.]+) \(([\d.]+)–([\d.]+)\)", value).groups()
                run, suite = row[0], col[: -len(" hard %")]
                if header[0] == "suite":  # the suites layout: a line per suite, runs side by side
                    run, suite = suite, run
                cells[(run, suite)] = (float(number), float(low), float(high))
    return cells


@pytest.mark.slow
@pytest.mark.parametrize("project", PROJECTS)
def test_smoke_runs_every_stage_and_reports_what_the_evaluations_scored(tmp_path, project):
    from tinylm.base.stats import wilson
    from tinylm.studies.experiment import FORGET_WINDOW, Project
    from tinylm.studies.experiment_config import statement_suite

    folder = _copy_repo(tmp_path, project)
    proc = subprocess.run([sys.executable, str(folder / "run_all.py"), "smoke"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    p = Project(folder, "smoke")
    for run in p.cfg.runs:
        assert p.checkpoint(run).is_file(), run
    # every table cell is the hard match its evaluation's summary holds
    tables = [item for item in p.cfg.report if item.kind == "table"]
    assert tables
    for item in tables:
        cells = _table_hard(p.results / item.file)
        assert cells
        for (run, suite), value in cells.items():
            if run in p.groups:  # the mean over seeds, and their min-max
                folders = [p.eval_dir(m, FORGET_WINDOW if p.forgets(m) else p.cfg.eval.window) for m in p.groups[run]]
                scores = [{s["suite"]: s for s in json.loads((f / "summary.json").read_text())["suites"]}
                          [suite]["hard_pct"] for f in folders]
                assert value == pytest.approx((sum(scores) / len(scores), min(scores), max(scores)), abs=0.05)
                continue
            window = FORGET_WINDOW if p.forgets(run) else p.cfg.eval.window
            suite, label = statement_suite(suite, p.cfg.eval.statements)
            if suite.endswith("]"):
                suite, window = suite[:-1].split(" [")
            summary = json.loads((p.eval_dir(run, window) / "summary.json").read_text())
            scored = {s["suite"]: s for s in summary["suites"]}[suite]
            scored = scored["by_statement"][label] if label else scored
            low, high = wilson(scored["hard"], scored["n"])
            assert value == pytest.approx((scored["hard_pct"], 100 * low, 100 * high), abs=0.05), (item.file, run, suite)
    # summary.json holds every run's cells with n and intervals, and the machine
    written = json.loads((p.results / "summary.json").read_text())
    assert written["machine"]["cpu"] and written["commit"]
    for run in p.eval_runs():
        window = FORGET_WINDOW if p.forgets(run) else p.cfg.eval.window
        group = next((g for g, members in p.groups.items() if run in members), run)
        seed = p.train_config(run).seed if p.cfg.runs[run].checkpoint is None else None
        for s in json.loads((p.eval_dir(run, window) / "summary.json").read_text())["suites"]:
            cell = next(c for c in written["cells"]
                        if (c["run"], c["seed"], c["suite"], c["metric"]) == (group, seed, s["suite"], "hard_pct"))
            assert (cell["n"], cell["value"]) == (s["n"], pytest.approx(s["hard_pct"]))
            assert cell["ci_low"] <= cell["value"] <= cell["ci_high"]
    for item in p.cfg.report:
        if item.file.endswith(".png"):
            import matplotlib.image

            assert matplotlib.image.imread(p.results / item.file).ndim == 3, item.file
    # a run started from another ends up with that run's architecture, and was trained from its weights
    for name, run in p.cfg.runs.items():
        if run.init_run:
            cfg = p.train_config(name)
            assert Path(cfg.init_from) == p.checkpoint(run.init_run)
    # a run with steps_of trained exactly as many steps as the run it names (times its steps_factor)
    for name, run in p.cfg.runs.items():
        if run.steps_of:
            length = json.loads((p.run_dir(name) / "run.json").read_text())["max_steps"]
            assert length == round(p.trained_steps(run.steps_of) * run.steps_factor), name
            assert (p.run_dir(name) / f"ckpt_{length:08d}.pt").is_file(), name
    # a run given its own suites is scored on those only
    for name, run in p.cfg.runs.items():
        if run.suites:
            summary = json.loads((p.eval_dir(name) / "summary.json").read_text())
            assert [s["suite"] for s in summary["suites"]] == run.suites, name
    # a sweep run is scored at every checkpoint it kept
    for name, run in p.cfg.runs.items():
        if run.sweep:
            rows = json.loads((p.work / "sweep" / name / "sweep.json").read_text())["rows"]
            assert len(rows) == len(list(p.run_dir(name).glob("ckpt_*.pt"))) >= 2
    # no program of a suite the project scores is in any training split a run of it trains on
    scored = {e[:e.index("\n#STEP\n")] for name in p.suites() if p.suite_path(name).is_file()
              for e in p.suite_path(name).read_text().split("\n\n") if e.strip()}
    assert scored
    trained_on = set()
    for name, run in p.cfg.runs.items():
        if run.checkpoint is None:
            cfg = p.train_config(name)
            trained_on |= {s.dataset for s in cfg.data.stages} or {cfg.data.dataset}
    for dataset in trained_on:
        assert not scored & set(built_programs(Path(dataset))["train"]), dataset
    # a forgetting run's table row is its evaluation: the policy kept at least its budget's ratio (short
    # contexts are kept whole), for less attention; a run trained longer is named so; the seeds of a
    # run are one row, named after the run
    group_of = {m: name for name, members in p.groups.items() for m in members}
    for item in p.cfg.report:
        if item.kind == "forget" and item.file.endswith(".md"):
            text = (p.results / item.file).read_text()
            for name, run in p.cfg.runs.items():
                if p.forgets(name):
                    f = json.loads((p.eval_dir(name, FORGET_WINDOW) / "summary.json").read_text())["suites"][0]["forget"]
                    longer = f" x{run.steps_factor:g} steps" if run.steps_factor != 1 else ""
                    assert f"| {group_of.get(name, name)} | {f['variant']}{longer} |" in text
                    assert f["keep_ratio"] - 0.01 <= f["kept_ratio"] <= 1
                    assert f["attn_flops_per_token"] <= f["attn_flops_full_per_token"]
    # a second run of every stage finds everything done and changes nothing
    before = {f: f.stat().st_mtime_ns for f in p.work.rglob("*.pt")}
    again = subprocess.run([sys.executable, str(folder / "run_all.py"), "smoke"], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert {f: f.stat().st_mtime_ns for f in p.work.rglob("*.pt")} == before


def test_the_tinystories_seed_config_builds_the_seeds_936448_parameters():
    from tinylm.model.gpt import GPT
    from tinylm.studies.experiment import Project
    from tinylm.train.config import resolve_model_config

    p = Project(REPO / "tinystories_recipe", "seed")
    cfg = p.train_config("main")
    spec = yaml.safe_load((REPO / "datasets/stories-mini/dataset.yaml").read_text())
    assert p.cfg.datasets["stories-mini"].overrides == ["tokenizer.vocab_size=105"]
    assert spec["tokenizer"]["kind"] == "sentencepiece"
    model = GPT(resolve_model_config(cfg, 105, "seed.yaml"))
    c = model.config
    assert (c.n_embd, c.n_layer, c.n_head, c.kv_heads, c.block_size) == (128, 5, 8, 4, 256)
    assert model.num_params() == 936_448


def test_research_project_1_paper_main_model_is_the_references_62348221_parameters():
    import torch

    from tinylm.model.gpt import GPT
    from tinylm.studies.experiment import Project
    from tinylm.train.config import resolve_model_config

    p = Project(REPO / "research_project_1", "paper")
    with torch.device("meta"):
        model = GPT(resolve_model_config(p.train_config("main"), vocab_size=77, where="main"))
    assert model.num_params() == 62_348_221   # the reference 2025 main model's count


def test_research_project_1_paper_config_is_the_references_experiment():
    """The quantities that define the experiment (README: reference vs ours)."""
    from tinylm.lang.spec import preset
    from tinylm.studies.experiment import Project
    from tinylm.train.config import lr_at

    p = Project(REPO / "research_project_1", "paper")
    main = p.train_config("main")
    assert main.batch_size * 512 == 262_144 and main.max_epochs == 4 and main.max_steps is None
    total = 100_000
    rates = [lr_at(step, main.optim, total) for step in (1_000, 49_999, 50_000, 99_999)]
    assert rates == [1e-3, 1e-3, pytest.approx(1e-4), pytest.approx(1e-4)]   # 2 epochs at 1e-3, 2 at 1e-4
    assert {2.0, 4.0} <= set(main.checkpoint.at_epochs)   # the reference's two reported epochs, never pruned
    sizes = {run: p.train_config(run).data.train_examples for run in ("data-quarter", "data-half", "main")}
    assert sizes == {"data-quarter": 2_500_000, "data-half": 5_000_000, "main": None}
    assert p.cfg.datasets["main2025-double"].overrides == ["splits.train=20000000"]
    assert all(p.train_config(r).max_epochs == 4 for r in ("data-quarter", "data-half", "data-double"))
    assert preset("nightly-ood-deeper-nesting").nightly.min_depth == 3
    spec = yaml.safe_load((REPO / "datasets" / "main2025-paper" / "dataset.yaml").read_text())
    assert {"name": "main-grammar", "generator": {"preset": "nightly"}, "count": 20000} in spec["ood"]
    renamed = p.cfg.eval.derived[0]
    assert renamed.lengths == [2] and renamed.trained_letters and renamed.suite == "main-grammar"


def tiny_build(spec_dir: Path, out: Path) -> Path:
    """The dataset `spec_dir` describes, its generator, format and tokenizer unchanged, at a few dozen
    programs (no OOD suites, no decontamination)."""
    from tinylm.data.datasets import build

    if not out.exists():
        spec = yaml.safe_load((spec_dir / "dataset.yaml").read_text())
        spec.update(splits={"train": 60, "val": 8, "test": 8}, ood=[], shard_size=30)
        spec.pop("decontaminate", None)
        out.mkdir(parents=True)
        (out / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        build(out, workers=1)
    return out


def shrunk(cfg, tmp_path: Path, spec_dirs: dict, **changes):
    """`cfg` with only its sizes shrunk: model, batch, validation sample, datasets (tiny builds)."""
    import dataclasses

    data = dataclasses.replace(cfg.data, dataset=str(tiny_build(spec_dirs[cfg.data.dataset], tmp_path / "data")))
    return dataclasses.replace(
        cfg, batch_size=4, grad_accum=1, compile=False, device="cpu", dtype="float32", eval_tokens=2048,
        model={**cfg.model, "n_layer": 2, "n_embd": 32, "n_head": 2, "head_dim": None}, data=data,
        optim=dataclasses.replace(cfg.optim, warmup_steps=2, warmup_fraction=0.0),
        log=dataclasses.replace(cfg.log, progress=False), **changes)


def spec_dirs_of(project) -> dict:
    """Resolved dataset path (as a TrainConfig holds it) -> the folder of the spec it is built from."""
    from tinylm.base.files import resolve_path

    out = {}
    for name, entry in project.cfg.datasets.items():
        spec = resolve_path(entry.spec, project.config_file)
        out[str(project.dataset_dir(name))] = spec
    return out


@pytest.mark.slow
def test_research_project_1_paper_main_run_starts_with_only_its_sizes_shrunk(tmp_path):
    """Same code path, schedule shape, checkpoints and data pipeline as the paper config; only the
    model, the batch and the dataset's split sizes are shrunk."""
    import json

    from tinylm.studies.experiment import Project
    from tinylm.train.loop import run

    p = Project(REPO / "research_project_1", "paper")
    summary = run(shrunk(p.train_config("main"), tmp_path, spec_dirs_of(p), out_dir=str(tmp_path / "run")))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    epoch = info["length"]["steps_per_epoch"]
    assert summary["step"] == 4 * epoch
    kept = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "run").glob("ckpt_*.pt"))
    assert {2 * epoch, 4 * epoch} <= set(kept) and len(kept) == 8   # every half epoch, none pruned
    rates = {json.loads(line)["step"]: json.loads(line)["lr"] for line in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"lr"' in line}
    assert rates[2 * epoch] == 1e-3 and rates[2 * epoch + 1] == pytest.approx(1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("project,runs", [
    ("research_project_2", ["rope"]),
    ("research_project_3", ["step-mask"]),
    ("research_project_4", ["main"]),
    ("research_project_5", ["pretrain", "mlp-0.25"]),
])
def test_paper_runs_start_with_only_their_sizes_shrunk(tmp_path, project, runs):
    """Each paper config's runs train for real on CPU through the same code path (a fine-tuning run
    from the shrunk run before it, or from scratch where it would start from another project)."""
    from tinylm.studies.experiment import Project
    from tinylm.train.loop import run

    p = Project(REPO / project, "paper")
    previous = None
    for name in runs:
        cfg = p.train_config(name)
        cfg = shrunk(cfg, tmp_path, spec_dirs_of(p), out_dir=str(tmp_path / name), max_epochs=None, max_steps=4,
                     eval_interval=2, init_from=previous)
        summary = run(cfg)
        assert summary["step"] == 4 and (tmp_path / name / "best.pt").is_file()
        previous = str(tmp_path / name / "best.pt")


def test_research_projects_2_4_5_paper_configs_hold_the_reference_quantities():
    """README tables, reference vs ours: what each paper config must keep."""
    import torch

    from tinylm.model.gpt import GPT
    from tinylm.studies.experiment import Project
    from tinylm.train.config import resolve_model_config

    rp2 = Project(REPO / "research_project_2", "paper")
    widths = set()
    for run in rp2.cfg.runs:
        cfg = rp2.train_config(run)
        with torch.device("meta"):
            c = GPT(resolve_model_config(cfg, vocab_size=77, where=run)).config
        widths.add((c.n_embd, c.n_head, c.hs))
        assert cfg.batch_size == 512 and cfg.max_epochs == 2
    assert widths == {(464, 16, 30)}   # every encoding the same attention shape: only the encoding differs
    rp4 = Project(REPO / "research_project_4", "paper").train_config("main")
    assert (rp4.model["n_head"], rp4.max_epochs, rp4.checkpoint.at_epochs) == (16, 24, [float(e) for e in range(1, 25)])
    spec = yaml.safe_load((REPO / "datasets" / "grammarb" / "dataset.yaml").read_text())
    assert spec["splits"]["train"] == 3_000_000
    rp5 = Project(REPO / "research_project_5", "paper")
    targets = {rp5.train_config(r).forget.max_target for r in rp5.cfg.runs if r != "pretrain"}
    assert targets == {256}   # the longest main-grammar step (231 tokens) fits the target


def test_a_config_with_a_base_is_a_delta_on_it(tmp_path):
    from tinylm.studies.experiment import Project

    configs = tmp_path / "p" / "configs"
    configs.mkdir(parents=True)
    (configs / "cpu.yaml").write_text(yaml.safe_dump({
        "train": {"model": {"preset": "demo", "mlp_ratio": 2}, "batch_size": 32, "max_steps": 100},
        "runs": {"main": {}, "wide": {"overrides": {"model.n_embd": 192}}},
        "eval": {"suites": {"id": "x/test.txt"}, "limit": 1000}}))
    (configs / "smoke.yaml").write_text(yaml.safe_dump({
        "base": "cpu.yaml", "train": {"model": {"n_layer": 2}, "max_steps": 4}, "runs": {"main": {}},
        "eval": {"limit": 2}}))
    p = Project(tmp_path / "p", "smoke")
    assert p.train_config("main").model == {"preset": "demo", "mlp_ratio": 2, "n_layer": 2}   # merged key by key
    assert (p.train_config("main").batch_size, p.train_config("main").max_steps) == (32, 4)
    assert list(p.cfg.runs) == ["main"] and p.cfg.eval.limit == 2 and p.cfg.eval.suites == {"id": "x/test.txt"}
    (configs / "bad.yaml").write_text("base: nope.yaml\n")
    with pytest.raises(ConfigError, match="base: nope.yaml"):
        Project(tmp_path / "p", "bad")
    (configs / "deep.yaml").write_text("base: smoke.yaml\n")
    with pytest.raises(ConfigError, match="one level only"):
        Project(tmp_path / "p", "deep")


@pytest.mark.slow
def test_research_project_1_paper_main_run_under_torchrun_trains_and_resumes(tmp_path):
    """The paper path on two CPU processes (gloo), as it runs on GPUs: torchrun, the global batch
    split over the ranks, stopped at a step and resumed to the run one uninterrupted launch gives."""
    import os

    from tinylm.base.config import to_dict, write_yaml
    from tinylm.studies.experiment import Project

    p = Project(REPO / "research_project_1", "paper")
    base = shrunk(p.train_config("main"), tmp_path, spec_dirs_of(p), max_epochs=None, max_steps=6, eval_interval=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(name: str, *extra: str) -> None:
        cfg = to_dict(base)
        cfg["out_dir"] = str(tmp_path / name)
        write_yaml(cfg, tmp_path / f"{name}.yaml")
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "tinylm.cli", "train", str(tmp_path / f"{name}.yaml"), *extra],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 x cpu" in done.stdout

    launch("whole")
    launch("parts", "stop_at_step=3")
    launch("parts", "--resume")
    import torch

    whole = torch.load(tmp_path / "whole" / "ckpt_00000006.pt", weights_only=True)
    parts = torch.load(tmp_path / "parts" / "ckpt_00000006.pt", weights_only=True)
    assert whole["train_state"]["world_size"] == 2
    assert all(torch.equal(whole["model"][k], parts["model"][k]) for k in whole["model"])
