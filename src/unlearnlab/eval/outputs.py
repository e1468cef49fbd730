"""Forward passes computed once per (model, split) and cached; metrics read only these arrays."""
from __future__ import annotations

import weakref
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.core import batches

Outputs = dict[str, dict[str, np.ndarray]]  # split -> {"logits", "labels", "loss", "correct"}


@torch.no_grad()
def split_outputs(model: nn.Module, dataset: Dataset, task, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Concatenate task.outputs over `dataset` in eval mode (one forward pass per batch)."""
    from ..models.layout import channels_last

    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    with channels_last(model):  # CPU conv nets: faster oneDNN kernels; the model is put back as it was
        for batch in batches(dataset, batch_size):
            for k, v in task.outputs(model, batch).items():
                parts.setdefault(k, []).append(v.detach().float().cpu().numpy() if v.is_floating_point()
                                               else v.detach().cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}


class OutputCache:
    """Caches outputs per (model object, split name) so every metric shares one forward pass."""

    def __init__(self) -> None:
        self._store: weakref.WeakKeyDictionary[nn.Module, dict[str, dict[str, np.ndarray]]] = \
            weakref.WeakKeyDictionary()
        self.passes = 0

    def get(self, model: nn.Module, data, task, splits: Iterable[str] = ("forget", "retain", "test"),
            batch_size: int = 512) -> Outputs:
        """Outputs of `model` on each named split of `data`, computing only the missing ones."""
        cached = self._store.setdefault(model, {})
        named = data.splits()
        for s in splits:
            if s not in cached:
                cached[s] = split_outputs(model, named[s], task, batch_size)
                self.passes += 1
        return {s: cached[s] for s in splits}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
