"""Two-process DDP (gloo, CPU) takes the same steps as one process on the same global batch.

The two ranks are forked children given the environment torchrun would set (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT); forking spares each of them a fresh torch import.
`TINYLM_TEST_TORCHRUN=1` launches them with `torchrun --standalone --nproc_per_node 2` instead.
The Muon case always uses torchrun: forked ranks stall in Muon's Newton-Schulz matrix products once
the parent process has run multi-threaded (fork after an OpenMP pool), fresh processes do not.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
from test_train import checkpoint, tiny_config, train

from tinylm.config import load_config, write_yaml
from tinylm.train import TrainConfig, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, config: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    run(load_config(TrainConfig, config))


def launch_forked(config: str) -> None:
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    procs = [ctx.Process(target=rank_main, args=(rank, port, config)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]


def launch_torchrun(config: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tinylm.cli", "train", config], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 x cpu" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_rank_ddp_equals_one_process(tmp_path, optimizer):
    # step masks give the ranks different token counts: the update must still be the global-batch mean
    changes = {"max_steps": 2, "eval_interval": 2, "data.mask": "step", "optim.name": optimizer}
    single = train(tmp_path / "single", **changes)  # first: the forked ranks inherit a warmed-up torch
    config = tmp_path / "ddp.yaml"
    write_yaml(tiny_config(tmp_path / "ddp", **changes), config)
    fresh = os.environ.get("TINYLM_TEST_TORCHRUN") or optimizer == "muon"
    (launch_torchrun if fresh else launch_forked)(str(config))

    ddp = checkpoint(tmp_path / "ddp" / "run", 2)
    one = checkpoint(single["out_dir"], 2)
    assert ddp["train_state"]["world_size"] == 2 and len(ddp["train_state"]["rng"]) == 2
    diff = max((ddp["model"][k] - one["model"][k]).abs().max().item() for k in one["model"])
    assert diff < 1e-6
    assert ddp["train_state"]["val_loss"] == pytest.approx(one["train_state"]["val_loss"], abs=1e-5)
