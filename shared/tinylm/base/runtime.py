"""Where and how a process runs: device, torchrun/DDP, autocast precision, compile, seeds.

This is the only module that names accelerators. Everything else asks a `Runtime` for its
device, its rank, an autocast context and a wrapped model:

    rt = setup(device="auto", dtype="auto", seed=1337)   # reads torchrun's RANK/LOCAL_RANK/WORLD_SIZE
    model = rt.wrap(model.to(rt.device), compile=False)  # torch.compile, then DDP when distributed
    with rt.autocast():
        logits, loss = model(x, y)
    rt.close()

Distributed runs are launched by `torchrun` (single node: `--nproc_per_node N`; several nodes:
torchrun's own rendezvous, `--nnodes`, `--rdzv_endpoint`). The process group is initialised
from the environment torchrun sets (`env://`): `nccl` on GPUs, `gloo` on CPU.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from tinylm.base.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' picks cuda (this process's local rank), then mps, then cpu; else the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a device name (use auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' requested but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' requested but MPS is not available here")
    return device


def autocast_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """The compute dtype: 'auto' is bfloat16 on CUDA GPUs that support it, float16 on older CUDA GPUs
    (T4, V100: training scales the loss, see tinylm.train.loop), float32 elsewhere."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's RNG states (Python, NumPy, torch CPU and accelerator), as checkpointable data."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_data(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    np.random.set_state(_numpy_state_from_data(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _numpy_state_to_data(state: tuple) -> list:
    # plain ints, so that checkpoints load with torch.load(weights_only=True)
    name, keys, pos, has_gauss, gauss = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _numpy_state_from_data(data: list) -> tuple:
    name, keys, pos, has_gauss, gauss = data
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)


def _as_tuple(value):
    # checkpoints may turn tuples into lists; RNG setters want the original nesting
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


@dataclass
class Runtime:
    """One process's place in a run: its device, rank and precision."""

    device: torch.device
    dtype: torch.dtype        # autocast compute dtype; float32 means no autocast
    rank: int = 0             # global rank among all processes
    local_rank: int = 0       # rank on this node; picks the GPU
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Only the main process logs, writes files and shows progress."""
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self):
        """Mixed-precision context for forward passes; a no-op in float32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def wrap(self, model: torch.nn.Module, compile: bool = False) -> torch.nn.Module:
        """The module the training step calls: compiled if asked, DDP-wrapped when distributed.

        Parameters stay shared with `model`, which remains the one to save and evaluate.
        """
        if compile:
            model = torch.compile(model)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(model, device_ids=ids)
        return model

    def to_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Host tensors to this device (pinned and asynchronous on CUDA)."""
        if self.device.type == "cuda":
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in tensors)
        return tuple(t.to(self.device) for t in tensors)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place; identity in a single process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_objects(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        """Rank 0's `obj` on every rank; identity in a single process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Tear down the process group (if this process made one)."""
        if dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str = "auto", dtype: str = "auto", seed: int = 0, tf32: bool = True) -> Runtime:
    """Read torchrun's environment, join the process group if there is one, pick device and dtype.

    `tf32`: float32 matrix products on CUDA may round their inputs to TF32 (faster; training wants
    it, exact evaluation does not).

    Each rank is seeded with `seed + rank`; data order does not depend on these seeds (the
    batch sampler is seeded explicitly), only dropout and other in-model randomness do.
    """
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    dev = select_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://",
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32   # fp32 matmuls (outside autocast)
        torch.backends.cudnn.allow_tf32 = tf32
    seed_everything(seed + rank)
    return Runtime(device=dev, dtype=autocast_dtype(dev, dtype), rank=rank,
                   local_rank=local_rank, world_size=world_size)
