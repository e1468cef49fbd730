"""Data parallelism across the processes of `accelerate launch` / torchrun, exact w.r.t. one process.

Launch (no `accelerate config` needed): `accelerate launch --multi_gpu --num_processes N -m unlearnlab.cli run ...`
or `torchrun --nproc_per_node N -m unlearnlab.cli run ...`. A launch is detected by WORLD_SIZE > 1 and initialised
lazily through accelerate's PartialState: gloo when CUDA is absent (or ACCELERATE_USE_CPU is set), else nccl with one
GPU per process. (`accelerate launch --cpu --num_processes N` starts ONE process unless given an MPI hostfile; on a
CPU-only machine use --multi_gpu or torchrun, which start N processes, and gloo is chosen here.) In a single process
every helper returns its input unchanged, so the one-process path computes exactly what it did before.

Design:
- Batches: every rank draws the SAME seeded global batch (same generator, order and augmentation) and keeps its
  contiguous slice (`shard`); a global batch with fewer examples than processes is replicated on every rank instead.
- Gradients: train() scales the rank's loss by its share w = n_local / n_global (1/world for a replicated batch),
  backpropagates, then SUM-all-reduces the gradients (`sync_gradients`), so each step equals the one-process step
  on the whole global batch, uneven last batches included. Example means over the step's batch are exact this way;
  token means and means over a second batch drawn inside the loss (paired retain batches, which `shard` slices the
  same way) go through `mean` / `ratio`, which all-reduce their normaliser, so they equal the one-process value too.
- Why no DDP wrapper (accelerate's prepare): loss functions call model(...) several times per step (forget and
  retain batches), read model attributes (config, decoder layers, PEFT's get_base_model), hook a block and stop the
  forward midway (RMU) and optimise parameter subsets. A DDP wrapper hides the attributes, expects one forward per
  backward and every parameter used. Reducing after backward leaves the model untouched and lets after_backward
  hooks (SalUn's masks) see the global gradient; the cost is no overlap of communication with backward.
- Frozen reference models (NPO, KL, UNDIAL, SimNPO/IdkDPO): per-rank deep copies (train() checks that every rank
  holds the same weights), evaluated on the rank's slice; `precompute_logprobs` scores each rank's slice of every
  batch and `gather`s them, so every rank holds the values of the whole dataset, looked up by example index.
- Engine (engine/dist_store.py): every rank runs the same jobs in the same order; rank 0 alone reads and writes the
  store and broadcasts what it read (`on_main`), evaluates, and prints. The other ranks wait in a collective meanwhile:
  its timeout is UNLEARNLAB_DIST_TIMEOUT_S (default 7200 s), so raise it for evaluations longer than that.
- Not reproduced across world sizes: dropout masks (per-rank global RNG; the LMs here use none) and BatchNorm batch
  statistics (per slice, as in DDP without SyncBatchNorm; running stats are broadcast from rank 0 after each step).
- FSDP / DeepSpeed are not implemented: sharded parameters would need every method's direct parameter access
  (regex parameter subsets, LoRA merge, deep-copied references, forward hooks, state_dict caching) made
  shard-aware; the models here fit on one device. Launching with them set raises DistributedError.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from .errors import UnlearnLabError


class DistributedError(UnlearnLabError):
    """A multi-process launch cannot start, or its processes disagree."""


class _State:
    partial: Any = None  # accelerate.PartialState once initialised
    suspended = 0  # > 0 inside local(): this rank works alone
    share: float | None = None  # this rank's share of the current training step's batch


_S = _State()


def launched() -> bool:
    """True when this process is one of several started by a launcher (WORLD_SIZE > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def _state() -> Any:
    if _S.partial is None:
        if _flag("ACCELERATE_USE_FSDP") or _flag("ACCELERATE_USE_DEEPSPEED"):
            raise DistributedError("FSDP and DeepSpeed are not implemented for unlearnlab training; launch plain data "
                                   "parallelism (accelerate launch --multi_gpu --num_processes N, without --use_fsdp "
                                   "or --use_deepspeed).")
        try:
            from accelerate import PartialState
        except ImportError:
            raise DistributedError("Multi-process runs need accelerate: pip install 'unlearnlab[llm]'.") from None
        cpu = not torch.cuda.is_available() or _flag("ACCELERATE_USE_CPU")
        timeout = timedelta(seconds=float(os.environ.get("UNLEARNLAB_DIST_TIMEOUT_S", "7200")))
        try:
            _S.partial = PartialState(timeout=timeout, **({"cpu": True, "backend": "gloo"} if cpu else {}))
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"Cannot start the process group ({e}); check MASTER_ADDR/MASTER_PORT (a free "
                                   "port: --main_process_port / --master_port) and that every process started."
                                   ) from None
    return _S.partial


def world_size() -> int:
    """Number of processes of this launch (1 without a launcher)."""
    return int(_state().num_processes) if launched() else 1


def rank() -> int:
    """This process's rank (0 without a launcher)."""
    return int(_state().process_index) if launched() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process reaches this point (no-op in a single process)."""
    if launched():
        torch.distributed.barrier()


def launch_device() -> torch.device:
    """This process's device under a launch: its own GPU with nccl, else the CPU."""
    dev = torch.device(_state().device)
    return dev if dev.type == "cuda" else torch.device("cpu")


def active() -> bool:
    """True when data parallelism applies here: a multi-process launch, not inside local()."""
    return launched() and _S.suspended == 0 and world_size() > 1


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Inside the block this rank works alone (train() and the helpers behave as in a single process)."""
    _S.suspended += 1
    try:
        yield
    finally:
        _S.suspended -= 1


def _comm(t: torch.Tensor) -> torch.Tensor:
    return t.to(launch_device())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (picklable objects)."""
    if not launched():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) run on rank 0 alone (under local()); its result, or its exception, on every rank."""
    if not active():
        return fn(*args, **kwargs)
    reply: Any = None
    error: BaseException | None = None
    if rank() == 0:
        try:
            with local():
                reply = ("ok", fn(*args, **kwargs))
        except Exception as e:  # every rank must leave the broadcast below, so the error travels too
            error, reply = e, ("error", e)
        try:
            pickle.dumps(reply)
        except Exception as e:  # noqa: BLE001 - an unpicklable result or exception travels as text
            reply = ("error", DistributedError(f"rank 0 produced {type(reply[1]).__name__} that cannot be sent to "
                                               f"the other ranks ({e})."))
    reply = broadcast_object(reply)
    if reply[0] == "error":
        raise error if error is not None else reply[1]
    return reply[1]


def broadcast_state(obj: Any) -> None:
    """Copy rank 0's state_dict of `obj` (a module, or anything with state_dict / load_state_dict) to every rank."""
    if not active():
        return
    state = obj.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            t = _comm(state[name].detach())
            torch.distributed.broadcast(t, src=0)
            state[name].copy_(t)
    obj.load_state_dict(state)


# -- batches ---------------------------------------------------------------------------------------
def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) slices of n examples for `world` ranks (sizes differ by at most one; first ranks larger)."""
    base, extra = divmod(n, world)
    out, lo = [], 0
    for r in range(world):
        hi = lo + base + (r < extra)
        out.append((lo, hi))
        lo = hi
    return out


def rows(batch: Any) -> int | None:
    """Number of examples of a batch (the first dimension of its first tensor), None without tensors."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for v in items:
        n = rows(v)
        if n is not None:
            return n
    return None


def _slice(batch: Any, n: int, lo: int, hi: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi] if batch.dim() and batch.shape[0] == n else batch
    if isinstance(batch, dict):
        return {k: _slice(v, n, lo, hi) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(v, n, lo, hi) for v in batch)
    return batch


def shard(batch: Any) -> tuple[Any, float]:
    """(this rank's contiguous slice of a global batch, its share of the batch); (batch, 1.0) in one process.

    A batch with fewer examples than processes is replicated: every rank keeps it whole, with share 1/world."""
    if not active():
        return batch, 1.0
    n, world = rows(batch), world_size()
    if n is None or n < world:
        return batch, 1.0 / world
    lo, hi = shard_bounds(n, world)[rank()]
    return _slice(batch, n, lo, hi), (hi - lo) / n


def local_part(batch: Any) -> Any:
    """This rank's slice of a global batch (the batch itself in one process)."""
    return shard(batch)[0]


def gather(local: torch.Tensor, n: int) -> torch.Tensor:
    """The per-example values of a whole global batch of `n` from every rank's slice (inverse of shard)."""
    if not active():
        return local
    world = world_size()
    if n < world:
        return local
    bounds = shard_bounds(n, world)
    width = max(hi - lo for lo, hi in bounds)
    buf = _comm(local.detach())
    if buf.shape[0] < width:
        buf = torch.cat([buf, buf.new_zeros((width - buf.shape[0], *buf.shape[1:]))])
    parts = [torch.empty_like(buf) for _ in range(world)]
    torch.distributed.all_gather(parts, buf.contiguous())
    return torch.cat([p[:hi - lo] for p, (lo, hi) in zip(parts, bounds)]).to(local.device)


# -- losses and gradients --------------------------------------------------------------------------
@contextlib.contextmanager
def step(share: float) -> Iterator[None]:
    """Mark a data-parallel training step in which this rank's loss will be scaled by `share` (train() uses it)."""
    old, _S.share = _S.share, share
    try:
        yield
    finally:
        _S.share = old


def _in_step() -> float | None:
    return _S.share if active() else None


def _global_count(count: Any, like: torch.Tensor) -> torch.Tensor:
    c = _comm(torch.as_tensor(count, dtype=torch.float64).detach().reshape(1).clone())
    torch.distributed.all_reduce(c)
    return c.to(like.device, like.dtype)[0]


def ratio(total: torch.Tensor, count: Any, *, at_least: float | None = None) -> torch.Tensor:
    """total / count (clamped below at `at_least`); in a data-parallel step, this rank's part of the global ratio."""
    share = _in_step()
    if share is None:
        if at_least is None:
            return total / count
        return total / (count.clamp_min(at_least) if isinstance(count, torch.Tensor) else max(count, at_least))
    denom = _global_count(count, total)
    if at_least is not None:
        denom = denom.clamp_min(at_least)
    return total / (denom * share)


def mean(values: torch.Tensor) -> torch.Tensor:
    """values.mean(); in a data-parallel step, this rank's part of the mean over every rank's values."""
    if _in_step() is None:
        return values.mean()
    return ratio(values.sum(), values.numel())


def check_replicas(model: nn.Module) -> None:
    """Raise DistributedError unless every rank holds the same weights (no-op in one process)."""
    if not active():
        return
    s = torch.zeros(2, dtype=torch.float64, device=launch_device())
    with torch.no_grad():
        for p in model.parameters():
            d = p.detach().to(s.device, torch.float64)
            s[0] += d.sum()
            s[1] += (d * d).sum()
    both = torch.cat([s, -s])
    torch.distributed.all_reduce(both, op=torch.distributed.ReduceOp.MAX)
    if not torch.equal(both[:2], -both[2:]):
        raise DistributedError("The processes start training from different weights. Build the model from the same "
                               "seed on every rank, or call unlearnlab.distributed.broadcast_state(model) first.")


def sync_gradients(params: Iterable[nn.Parameter], loss: torch.Tensor, share: float,
                   bucket: int = 1 << 24) -> tuple[float, bool]:
    """SUM-all-reduce the gradients of `params` over the ranks; returns (the global loss, whether every rank's
    loss was finite). Raises DistributedError when the ranks computed gradients for different parameters."""
    grads = [p.grad for p in params if p.grad is not None]
    k, world = len(grads), world_size()
    head = torch.tensor([float(not torch.isfinite(loss.detach()).all()), k, k * k,
                         float(loss.detach().float().mean()) * share], dtype=torch.float64, device=launch_device())
    torch.distributed.all_reduce(head)
    if head[1] != world * k or head[2] != world * k * k:
        raise DistributedError("The processes computed gradients for different parameters; every rank must run "
                               "the same loss code on its slice (no data-dependent branches that skip layers).")
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    for group in groups.values():
        start = 0
        while start < len(group):
            end, size = start, 0
            while end < len(group) and (end == start or size + group[end].numel() <= bucket):
                size += group[end].numel()
                end += 1
            chunk = group[start:end]
            flat = _comm(torch.cat([g.reshape(-1) for g in chunk]))
            torch.distributed.all_reduce(flat)
            offset = 0
            for g in chunk:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
            start = end
    return float(head[3]), bool(head[0] == 0)


def sync_norm_buffers(model: nn.Module) -> None:
    """Broadcast rank 0's BatchNorm running statistics (so the replicas stay identical, as DDP does)."""
    if not active():
        return
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            for b in m.buffers():
                t = _comm(b.detach())
                torch.distributed.broadcast(t, src=0)
                b.copy_(t)


__all__ = ["DistributedError", "launched", "world_size", "rank", "is_main", "barrier", "launch_device", "active",
           "local", "broadcast_object", "on_main", "broadcast_state", "shard_bounds", "rows", "shard", "local_part",
           "gather", "step", "ratio", "mean", "check_replicas", "sync_gradients", "sync_norm_buffers"]
