"""Task: what differs between model kinds (loss, cached outputs, features); methods are written against it."""
from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import precision


class Task(Protocol):
    """The contract a model kind implements so that methods and metrics stay kind-agnostic."""

    kind: str

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean training loss of `model` on `batch`."""
        ...

    def per_example_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Loss of each example in `batch` (shape [B])."""
        ...

    def outputs(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Per-example outputs cached for metrics."""
        ...

    def features(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Penultimate representation of each example."""
        ...


class ClassifierTask:
    """Image / vector classifiers: batches are (x, y); loss is cross-entropy."""

    kind = "classifier"

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", amp: bool = False):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.amp = amp  # bf16 autocast of the forward passes (models/precision.py); methods.base.AUTOCAST says which

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """model(x); with `amp`, under bf16 autocast where it is fast, the output cast back to float32, so losses,
        backward passes and optimiser steps stay in float32 (autocast covers the forward only, as recommended)."""
        if not self.amp:
            return model(x)
        with precision.autocast(self.device, True):
            out = model(x)
        return out.float()

    def to_device(self, batch):
        """Move an (x, y) batch to the task device."""
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def logits(self, model: nn.Module, batch) -> torch.Tensor:
        """Model logits for the inputs of `batch`."""
        x, _ = self.to_device(batch)
        return self.forward(model, x)

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = self.to_device(batch)
        return F.cross_entropy(self.forward(model, x), y)

    def per_example_loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = self.to_device(batch)
        return F.cross_entropy(self.forward(model, x), y, reduction="none")

    def outputs(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = self.to_device(batch)
        logits = self.forward(model, x).float()
        loss = F.cross_entropy(logits, y, reduction="none")
        return {"logits": logits, "labels": y, "loss": loss, "correct": (logits.argmax(1) == y).float()}

    def features(self, model: nn.Module, batch) -> torch.Tensor:
        x, _ = self.to_device(batch)
        if hasattr(model, "features"):
            return model.features(x)
        raise TypeError(f"{type(model).__name__} has no .features(x); add one returning the penultimate layer.")
