"""The engine's Task contract and the registry of tasks by spec.task."""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..errors import UnknownNameError


def same_weights(a: Any, b: Any) -> bool:
    """True when two models hold bitwise-identical parameters and buffers (same names and shapes): the check behind
    every task's "the method changed nothing" warning."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu())
                                          for k in sa)


@dataclasses.dataclass
class Plan:
    """What a spec needs: its methods (baselines first), the content key of every model a job builds
    ((role, seed) -> key; a role without a key is not built by a job, e.g. a user's own original), and the stored
    spec of every run record ((method, seed) -> record spec; 'oracle-floor' entries are the noise-floor runs).
    `oracle` False declares a task without a retrained oracle (Stable Diffusion): its plan has no oracle model, no
    'retrain' run and no 'oracle-floor' runs, and its records carry no gap metrics to an oracle."""

    methods: list[str]
    model_keys: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    record_specs: dict[tuple[str, int], dict] = dataclasses.field(default_factory=dict)
    oracle: bool = True

    def __post_init__(self) -> None:
        if not self.oracle and ("retrain" in self.methods or any(r == "oracle" for r, _ in self.model_keys)):
            raise ValueError("a plan without an oracle (oracle=False) cannot build an oracle or run 'retrain'.")


class ExperimentTask(Protocol):
    """What a model kind supplies to the engine."""

    kind: str

    def plan(self, spec: Any) -> Plan:
        """Validate `spec` (fail before any training) and name its models and run records."""
        ...

    def build(self, spec: Any, seed: int, role: str, store: Any) -> str:
        """Train or load the 'original' or 'oracle' model of `seed` into the store's model cache."""
        ...

    def run(self, spec: Any, seed: int, method: str, store: Any, rspec: dict) -> dict:
        """Apply `method` (or a baseline) for `seed`, evaluate (and attack) it: the run record."""
        ...

    def floor(self, spec: Any, seed: int, other: int, store: Any, rspec: dict) -> dict:
        """The oracle of seed `other` evaluated against the oracle of `seed`: the noise-floor record."""
        ...


_TASKS: dict[str, Any] = {}
_KINDS = {"classifier": ("unlearnlab.tasks.classifier", "ClassifierTask"), "qa": ("unlearnlab.tasks.lm_task", "QATask"),
          "diffusion": ("unlearnlab.tasks.diffusion", "DiffusionTask")}


def get_task(kind: str) -> ExperimentTask:
    """The (process-wide) Task for spec.task `kind`."""
    import importlib

    if kind not in _KINDS:
        raise UnknownNameError("task", kind, list(_KINDS))
    if kind not in _TASKS:
        mod, cls = _KINDS[kind]
        _TASKS[kind] = getattr(importlib.import_module(mod), cls)()
    return _TASKS[kind]


__all__ = ["ExperimentTask", "Plan", "get_task"]
